"""Finding and validating recipient certificates (OCES LDAP directories, local store)."""
