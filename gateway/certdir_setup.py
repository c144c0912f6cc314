"""The config file's [certdir] section as certdir's own settings.

certdir knows nothing of the config file (it never imports gateway); this is the
one place that maps one onto the other. The lookup cache is an SQLite file:
`[certdir] cache_database`, or by default `certcache.db` beside the spool folder
(the spool's parent is the gateway's writable state directory).
"""

from __future__ import annotations

from pathlib import Path

from certdir import (
    CertificateDirectory,
    DirectorySettings,
    LdapSettings,
    RevocationFallback,
)
from gateway.config import Config


def cache_path(cfg: Config) -> Path:
    if cfg.certdir.cache_database:
        return Path(cfg.certdir.cache_database)
    return Path(cfg.spool.path).parent / "certcache.db"


def settings_from_config(cfg: Config) -> DirectorySettings:
    c = cfg.certdir
    return DirectorySettings(
        trust_anchors=tuple(Path(p) for p in c.trust_anchors),
        local_store=Path(c.local_store) if c.local_store else None,
        cache_path=cache_path(cfg),
        cache_ttl=c.cache_ttl,
        negative_cache_ttl=c.negative_cache_ttl,
        check_revocation=c.check_revocation,
        revocation_unavailable=RevocationFallback(c.revocation_unavailable),
        accept_ec_keys=c.accept_ec_keys,
        fetch_timeout=c.fetch_timeout,
        ldap=tuple(
            LdapSettings(name=s.name, url=s.url, base=s.base, filter=s.filter, attribute=s.attribute,
                         bind_dn=s.bind_dn, bind_password=s.bind_password, timeout=s.timeout,
                         starttls=s.starttls, size_limit=s.size_limit, tls_ca_file=s.tls_ca_file)
            for s in c.ldap
        ),
    )


def directory_from_config(cfg: Config) -> CertificateDirectory:
    """A directory for the gateway's lifetime; `await directory.close()` at shutdown.
    Raises certdir.CertdirError when a trust anchor file cannot be read."""
    return CertificateDirectory(settings_from_config(cfg))

