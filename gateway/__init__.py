"""Everything with a lifetime: SMTP in, spool, pipeline, delivery, audit, CLI."""
