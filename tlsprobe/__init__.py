"""What a recipient domain's MX hosts can do: MX resolution, STARTTLS probing, grades."""
