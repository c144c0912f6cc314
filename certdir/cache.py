"""The lookup cache: one SQLite file, positive and negative answers with their
expiry. Unknowns (a directory down) are never written: they are not answers.

All SQLite work happens on one dedicated thread, so the event loop never waits
on disk and the connection is only ever used by the thread that made it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certdir_lookup (
    address    TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    chosen     BLOB,
    source     TEXT,
    entry      TEXT,
    rejected   TEXT NOT NULL,
    stored_at  REAL NOT NULL,
    expires_at REAL NOT NULL
)
"""


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class LookupCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="certdir-cache")
        self._db: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=10)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(_SCHEMA)
                db.commit()
            except (sqlite3.Error, OSError) as exc:
                raise CertdirError(f"certificate cache {self.path}: {exc}")
            self._db = db
        return self._db

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, fn, *args)

    # -- reading -----------------------------------------------------------------

    def _get(self, address: str, now: float) -> LookupResult | None:
        db = self._open()
        row = db.execute(
            "SELECT status, reason, chosen, source, entry, rejected FROM certdir_lookup "
            "WHERE address = ? AND expires_at > ?", (address, now)).fetchone()
        if row is None:
            return None
        status, reason, chosen_der, source, entry, rejected_json = row
        try:
            chosen = (CandidateCert.from_certificate(x509.load_der_x509_certificate(chosen_der), source, entry or "")
                      if chosen_der else None)
            rejected = tuple(_rejection(item) for item in json.loads(rejected_json))
            return LookupResult(address, LookupStatus(status), reason, chosen, rejected, cached=True)
        except (ValueError, KeyError, TypeError):
            return None  # a row this version cannot read is a miss, not an error

    async def get(self, address: str) -> LookupResult | None:
        try:
            result: LookupResult | None = await self._run(self._get, address, time.time())
        except sqlite3.Error as exc:
            raise CertdirError(f"certificate cache {self.path}: {exc}")
        return result

    # -- writing -----------------------------------------------------------------

    def _put(self, result: LookupResult, ttl: float, now: float) -> None:
        db = self._open()
        chosen = result.chosen
        db.execute(
            "INSERT OR REPLACE INTO certdir_lookup (address, status, reason, chosen, source, entry, rejected,"
            " stored_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (result.address, result.status.value, result.reason,
             _der(chosen.certificate) if chosen else None, chosen.source if chosen else None,
             chosen.entry if chosen else None, json.dumps([_rejection_row(r) for r in result.rejected]),
             now, now + ttl))
        db.commit()

    async def put(self, result: LookupResult, ttl: float) -> None:
        if result.status is LookupStatus.UNKNOWN or ttl <= 0:
            return  # an unknown is not an answer; see the module docstring
        try:
            await self._run(self._put, result, ttl, time.time())
        except sqlite3.Error as exc:
            raise CertdirError(f"certificate cache {self.path}: {exc}")

    def _forget(self, pattern: str) -> None:
        db = self._open()
        db.execute("DELETE FROM certdir_lookup WHERE address LIKE ? ESCAPE '\\'", (pattern,))
        db.commit()

    async def forget_address(self, address: str) -> None:
        await self._run(self._forget, _like_escape(address))

    async def forget_domain(self, domain: str) -> None:
        await self._run(self._forget, "%@" + _like_escape(domain))

    async def close(self) -> None:
        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None
        await self._run(_close)
        self._thread.shutdown(wait=True)


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
