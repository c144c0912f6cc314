"""Wiring tlsprobe to the configuration, and its results to the policy's facts.

The probe cache (grades and MTA-STS policies) lives where the audit records do:
with `[audit] database = "postgresql://..."` in that PostgreSQL database (tables
probe_domain_tls, probe_mta_sts_policy), shared by every gateway node (SPEC: more
than one machine); otherwise in SQLite at `[tls] probe_cache`, by default
`<parent of [spool] path>/probecache.db` (with the example config: ./var/probecache.db;
in the container the parent is /var/spool, not a volume, so docker/sikkermail.toml
names a file in the state volume). Either way `sikkermail probe` and
a running `serve` with the same config share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config import Config, parse_host_port
from policy.model import FactStatus, TlsFacts, TlsGrade
from tlsprobe import DomainProber, DomainStatus, DomainTls, ProbeCache, ProbeSettings
from tlsprobe.cache import CacheError
from tlsprobe.mx import make_resolver


def probe_cache_path(cfg: Config) -> Path:
    if cfg.tls.probe_cache:
        return Path(cfg.tls.probe_cache)
    return Path(cfg.spool.path).parent / "probecache.db"


class PostgresProbeCache(ProbeCache):
    """tlsprobe's cache tables in the gateway's PostgreSQL database."""

    placeholder = "%s"

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(url)

    def _connect_schema(self) -> None:
        import psycopg  # only needed with a PostgreSQL audit database

        self._psycopg_error: type[Exception] = psycopg.Error
        try:
            self._pg = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            # DOUBLE PRECISION: a Unix time in REAL (float4) would be off by minutes
            self._pg.execute("""CREATE TABLE IF NOT EXISTS probe_domain_tls (
                domain TEXT NOT NULL, settings TEXT NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL, data TEXT NOT NULL,
                PRIMARY KEY (domain, settings))""")
            self._pg.execute("""CREATE TABLE IF NOT EXISTS probe_mta_sts_policy (
                domain TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL, data TEXT NOT NULL)""")
        except psycopg.Error as exc:
            raise CacheError(f"probe cache in PostgreSQL: {exc}")

    def _run(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                cursor = self._pg.execute(sql, params)
                return list(cursor.fetchall()) if cursor.description else []
            except self._psycopg_error as exc:
                raise CacheError(f"probe cache in PostgreSQL: {exc}")

    def close(self) -> None:
        with self._lock:
            self._pg.close()


def probe_cache_from_config(cfg: Config) -> ProbeCache:
    url = cfg.audit.database
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresProbeCache(url)
    return ProbeCache(probe_cache_path(cfg))


def prober_from_config(cfg: Config, *, cache: bool = True) -> DomainProber:
    """The domain prober for this configuration (one per process; close() it)."""
    nameservers = [parse_host_port(ns, default_port=53) for ns in cfg.dns.nameservers]
    settings = ProbeSettings(
        port=cfg.delivery.mx_port,
        min_version=cfg.tls.min_version,
        ca_file=cfg.tls.ca_file or None,
        helo_name=cfg.server.hostname,
        timeout=cfg.tls.probe_timeout,
    )
    return DomainProber(
        make_resolver(nameservers, cfg.dns.timeout),
        settings,
        cache=probe_cache_from_config(cfg) if cache else None,
        cache_ttl=cfg.tls.probe_cache_ttl,
        failure_ttl=cfg.tls.probe_failure_ttl,
        mta_sts_port=cfg.tls.mta_sts_port,
    )


def tls_facts(result: DomainTls) -> TlsFacts:
    """The policy's view of a probe result (ARCHITECTURE.md: facts as plain values).

    UNKNOWN stays unknown (the decision defers, never weakens); a domain without
    mail servers has definitely no TLS to offer (NO).
    """
    if result.status is DomainStatus.GRADED and result.grade is not None:
        reason = result.reason
        if result.mta_sts_enforced:
            reason = f"tls-verified via MTA-STS enforce; {reason}"
        return TlsFacts(FactStatus.YES, reason, TlsGrade(result.grade.value))
    if result.status is DomainStatus.NO_MX:
        return TlsFacts(FactStatus.NO, result.reason)
    return TlsFacts(FactStatus.UNKNOWN, result.reason)
