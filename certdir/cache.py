"""The lookup cache: positive and negative answers with their expiry, one table.
Unknowns (a directory down) are never written: they are not answers.

Where the table lives is a `CacheDatabase`: an SQLite file by default (one node);
the gateway supplies one in its PostgreSQL database when several nodes share the
cache (SPEC: more than one machine), so certdir itself needs no driver but
sqlite3. The SQL and the row format are written once, here, in the dialect both
speak (`ON CONFLICT ... DO UPDATE`, `LIKE ... ESCAPE`); a database only says how
it connects, runs a statement, and spells a placeholder and a byte column.

All database work happens on one dedicated thread, so the event loop never waits
on disk or network, and a connection is only ever used by the thread that made it.
A database failure is a CertdirError, which the directory treats as a miss.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certdir.results import (
    CandidateCert,
    CertdirError,
    LookupResult,
    LookupStatus,
    Rejection,
    RejectionCode,
)

# DOUBLE PRECISION: in PostgreSQL a Unix time in REAL (float4) would be off by
# minutes; SQLite reads the name as its REAL (8 bytes) anyway.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS certdir_lookup (
    address    TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    chosen     {binary},
    source     TEXT,
    entry      TEXT,
    rejected   TEXT NOT NULL,
    stored_at  DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
)
"""

# _result() reads the columns of _SELECT; _row() gives the values of _UPSERT.
_SELECT = ("SELECT address, status, reason, chosen, source, entry, rejected FROM certdir_lookup "
           "WHERE address = ? AND expires_at > ?")
_UPSERT = ("INSERT INTO certdir_lookup (address, status, reason, chosen, source, entry, rejected, stored_at,"
           " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET"
           " status = excluded.status, reason = excluded.reason, chosen = excluded.chosen,"
           " source = excluded.source, entry = excluded.entry, rejected = excluded.rejected,"
           " stored_at = excluded.stored_at, expires_at = excluded.expires_at")
# lower() on both sides: SQLite's LIKE ignores ASCII case, PostgreSQL's does not,
# and an entry forgotten too many only costs a fresh lookup.
_FORGET = "DELETE FROM certdir_lookup WHERE lower(address) LIKE lower(?) ESCAPE '\\'"

# After a failed connect, further calls are misses at once for this long rather
# than each waiting for the same unreachable server.
RECONNECT_AFTER = 30.0


class CacheDatabase(Protocol):
    """Where the cache table lives. Called only from the cache's own thread;
    every method raises CertdirError when the database fails."""

    name: str  # for messages: a file path, "in PostgreSQL"
    placeholder: str  # how the driver spells a parameter: "?" or "%s"
    binary_type: str  # the column type for DER bytes: "BLOB" or "BYTEA"

    def connect(self) -> None: ...

    def execute(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Run one statement (committed at once); its rows, or [] when it returns none."""
        ...

    def close(self) -> None:
        """Drop the connection, if any; connect() may be called again afterwards."""
        ...


class SqliteDatabase:
    placeholder = "?"
    binary_type = "BLOB"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._db: sqlite3.Connection | None = None

    def connect(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
        except (sqlite3.Error, OSError) as exc:
            raise CertdirError(f"certificate cache {self.path}: {exc}")
        self._db = db

    def execute(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self._db is None:
            raise CertdirError(f"certificate cache {self.path}: not connected")
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise CertdirError(f"certificate cache {self.path}: {exc}")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class LookupCache:
    def __init__(self, database: str | os.PathLike[str] | CacheDatabase) -> None:
        self.database: CacheDatabase = (SqliteDatabase(Path(database)) if isinstance(database, (str, os.PathLike))
                                        else database)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="certdir-cache")
        self._connected = False
        self._retry_at = 0.0  # time.monotonic() before which a connect is not tried again

    # -- on the cache thread -------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.database.placeholder)

    def _ready(self) -> CacheDatabase:
        if not self._connected:
            if time.monotonic() < self._retry_at:
                raise CertdirError(f"certificate cache {self.database.name}: unavailable (connect failed recently)")
            try:
                self.database.connect()
                self.database.execute(_SCHEMA.format(binary=self.database.binary_type), ())
            except CertdirError:
                self._retry_at = time.monotonic() + RECONNECT_AFTER
                self.database.close()
                raise
            self._connected = True
        return self.database

    def _execute(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        database = self._ready()
        try:
            return database.execute(self._sql(sql), params)
        except CertdirError:
            # A server that restarted leaves a dead connection: connect afresh next time.
            self._connected = False
            database.close()
            raise

    def _close(self) -> None:
        self._connected = False
        self.database.close()

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, fn, *args)

    # -- the directory's calls --------------------------------------------------------

    async def get(self, address: str) -> LookupResult | None:
        rows: list[tuple[Any, ...]] = await self._in_thread(self._execute, _SELECT, (address, time.time()))
        return _result(rows[0]) if rows else None

    async def put(self, result: LookupResult, ttl: float) -> None:
        if result.status is LookupStatus.UNKNOWN or ttl <= 0:
            return  # an unknown is not an answer; see the module docstring
        await self._in_thread(self._execute, _UPSERT, _row(result, ttl, time.time()))

    async def forget_address(self, address: str) -> None:
        await self._forget(_like_escape(address))

    async def forget_domain(self, domain: str) -> None:
        await self._forget("%@" + _like_escape(domain))

    async def _forget(self, pattern: str) -> None:
        await self._in_thread(self._execute, _FORGET, (pattern,))

    async def close(self) -> None:
        await self._in_thread(self._close)
        self._thread.shutdown(wait=True)


# -- the row format: one place, whatever the database ---------------------------------------


def _row(result: LookupResult, ttl: float, now: float) -> tuple[Any, ...]:
    """The row _UPSERT stores for `result`."""
    chosen = result.chosen
    # The `rejected` column holds the rest of the answer as JSON: the rejections, how
    # the chosen certificate's revocation was established and the sources that could
    # not answer, so a cached answer says what the fresh one said. A JSON object
    # rather than new columns: a table already shared in PostgreSQL needs no migration.
    details = {"rejected": [_rejection_row(r) for r in result.rejected],
               "revocation": chosen.revocation if chosen else "", "errors": list(result.errors)}
    return (result.address, result.status.value, result.reason,
            _der(chosen.certificate) if chosen else None, chosen.source if chosen else None,
            chosen.entry if chosen else None, json.dumps(details), now, now + ttl)


def _result(row: tuple[Any, ...]) -> LookupResult | None:
    """The cached answer in a row of _SELECT; None for a row this version cannot read."""
    address, status, reason, chosen_der, source, entry, rejected_json = row
    try:
        details = json.loads(rejected_json)
        if isinstance(details, list):  # rows written before the details object
            details = {"rejected": details}
        chosen = (CandidateCert.from_certificate(x509.load_der_x509_certificate(bytes(chosen_der)), source,
                                                 entry or "")
                  if chosen_der else None)
        if chosen is not None:
            chosen = replace(chosen, revocation=str(details.get("revocation", "")))
        rejected = tuple(_rejection(item) for item in details["rejected"])
        errors = tuple(str(e) for e in details.get("errors", []))
        return LookupResult(address, LookupStatus(status), reason, chosen, rejected, cached=True, errors=errors)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a miss, not an error


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _rejection_row(r: Rejection) -> dict[str, Any]:
    return {"source": r.source, "code": r.code.value, "reason": r.reason, "entry": r.entry,
            "der": _der(r.candidate.certificate).hex() if r.candidate else None}


def _rejection(item: dict[str, Any]) -> Rejection:
    candidate = None
    if item.get("der"):
        cert = x509.load_der_x509_certificate(bytes.fromhex(item["der"]))
        candidate = CandidateCert.from_certificate(cert, item["source"], item.get("entry", ""))
    return Rejection(item["source"], RejectionCode(item["code"]), item["reason"], candidate, item.get("entry", ""))
