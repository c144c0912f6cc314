"""The config file's [certdir] section as certdir's own settings.

certdir knows nothing of the config file (it never imports gateway); this is the
one place that maps one onto the other.

The lookup cache lives where the audit records do: with `[audit] database =
"postgresql://..."` in that PostgreSQL database (table certdir_lookup), shared by
every gateway node (SPEC: more than one machine), so `sikkermail certs import` on
one node clears the cached "not found" on all of them; `[certdir] cache_database`
is then not used. Otherwise an SQLite file: `[certdir] cache_database`, or by
default `certcache.db` beside the spool folder (./var with the example config; in
the container that would be root's /var/spool, so docker/sikkermail.toml names a
file in the state volume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from certdir import (
    CertdirError,
    CertificateDirectory,
    DirectorySettings,
    LdapSettings,
    RevocationFallback,
)
from certdir.cache import LookupCache
from gateway.config import Config


class PostgresCacheDatabase:
    """certdir's lookup table in the gateway's PostgreSQL database (certdir.cache.CacheDatabase)."""

    name = "in PostgreSQL"
    placeholder = "%s"
    binary_type = "BYTEA"

    def __init__(self, url: str) -> None:
        self.url = url
        self._pg: Any = None  # a psycopg.Connection; psycopg is only imported when configured

    def connect(self) -> None:
        import psycopg  # only needed with a PostgreSQL audit database

        try:
            self._pg = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        except psycopg.Error as exc:
            raise CertdirError(f"certificate cache {self.name}: {exc}")

    def execute(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        import psycopg

        if self._pg is None:
            raise CertdirError(f"certificate cache {self.name}: not connected")
        try:
            cursor = self._pg.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []
        except psycopg.Error as exc:
            raise CertdirError(f"certificate cache {self.name}: {exc}")

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None


def shared_cache_url(cfg: Config) -> str | None:
    """The PostgreSQL URL when the lookup cache is shared between nodes, else None.
    (The config check admits only sqlite:/// and postgresql:// audit databases.)"""
    return cfg.audit.database if cfg.sqlite_path is None else None


def cache_path(cfg: Config) -> Path:
    if cfg.certdir.cache_database:
        return Path(cfg.certdir.cache_database)
    return Path(cfg.spool.path).parent / "certcache.db"


def settings_from_config(cfg: Config) -> DirectorySettings:
    c = cfg.certdir
    return DirectorySettings(
        trust_anchors=tuple(Path(p) for p in c.trust_anchors),
        local_store=Path(c.local_store) if c.local_store else None,
        cache_path=None if shared_cache_url(cfg) else cache_path(cfg),
        cache_ttl=c.cache_ttl,
        negative_cache_ttl=c.negative_cache_ttl,
        check_revocation=c.check_revocation,
        revocation_unavailable=RevocationFallback(c.revocation_unavailable),
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
    directory = CertificateDirectory(settings_from_config(cfg))
    url = shared_cache_url(cfg)
    if url:
        directory.cache = LookupCache(PostgresCacheDatabase(url))
    return directory

