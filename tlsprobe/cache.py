"""Persistent probe cache: domain grades and MTA-STS policies.

SQLite by default (one node). A subclass may put the same two tables in another
SQL database (the gateway's PostgreSQL, so several nodes share one cache) by
overriding `_connect_schema` and `_run`; the SQL here is the common dialect of
both (`ON CONFLICT ... DO UPDATE`).

A grade is only valid for the settings it was measured with (port, minimum
version, trust anchors): a changed `[tls] min_version` must not reuse old
grades, so each row carries a settings key. The methods are synchronous; the
prober calls them in a worker thread so a slow database never stalls the loop.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from tlsprobe.results import DomainTls, MtaStsPolicy, ProbeError, policy_from_dict

SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS probe_domain_tls (
        domain TEXT NOT NULL,
        settings TEXT NOT NULL,
        expires_at REAL NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (domain, settings))""",
    """CREATE TABLE IF NOT EXISTS probe_mta_sts_policy (
        domain TEXT PRIMARY KEY,
        expires_at REAL NOT NULL,
        data TEXT NOT NULL)""",
)


class CacheError(ProbeError):
    """The cache database failed: a read counts as a miss, a write is skipped."""


class ProbeCache:
    placeholder = "?"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._connect_schema()

    def _connect_schema(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")  # `sikkermail probe` and serve share the file
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        for statement in SQLITE_SCHEMA:
            self._db.execute(statement)

    def _run(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise CacheError(f"probe cache {self.path}: {exc}")

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def get_grade(self, domain: str, settings: str, now: float) -> DomainTls | None:
        rows = self._run(self._sql(
            "SELECT data FROM probe_domain_tls WHERE domain = ? AND settings = ? AND expires_at > ?"),
            (domain, settings, now))
        if not rows:
            return None
        data = json.loads(rows[0][0])
        data["from_cache"] = True
        return DomainTls.from_dict(data)

    def put_grade(self, result: DomainTls, settings: str, expires_at: float) -> None:
        self._run(self._sql(
            "INSERT INTO probe_domain_tls (domain, settings, expires_at, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (domain, settings) DO UPDATE SET expires_at = excluded.expires_at, "
            "data = excluded.data"),
            (result.domain, settings, expires_at, json.dumps(result.to_dict())))

    def get_policy(self, domain: str, now: float) -> MtaStsPolicy | None:
        rows = self._run(self._sql(
            "SELECT data FROM probe_mta_sts_policy WHERE domain = ? AND expires_at > ?"), (domain, now))
        return policy_from_dict(json.loads(rows[0][0])) if rows else None

    def put_policy(self, domain: str, policy: MtaStsPolicy) -> None:
        data = json.dumps({
            "mode": policy.mode.value, "mx": list(policy.mx), "max_age": policy.max_age,
            "policy_id": policy.policy_id, "fetched_at": policy.fetched_at, "source": policy.source,
        })
        self._run(self._sql(
            "INSERT INTO probe_mta_sts_policy (domain, expires_at, data) VALUES (?, ?, ?) "
            "ON CONFLICT (domain) DO UPDATE SET expires_at = excluded.expires_at, data = excluded.data"),
            (domain, policy.fetched_at + policy.max_age, data))

    def close(self) -> None:
        with self._lock:
            self._db.close()
