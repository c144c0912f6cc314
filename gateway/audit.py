"""The audit store: one tamper-evident record per message, every recipient, every operator act.

GDPR art. 5(2) (accountability) asks the organisation to *demonstrate* that
confidential and sensitive mail left protected; Datatilsynet's 2019 inspection of
a law-firm office community (2019-41-0029) turned on exactly that question. So:

- Nothing is rewritten. Every fact is an appended event; a message's record is
  the fold of its events (`messages` is only a projection for searching, and
  `verify` checks it against the fold).
- Events are hash-chained: each row holds `prev_hash` and `hash`, the SHA-256 of
  a canonical JSON of its sequence number, its content and `prev_hash`. The head
  of the chain is kept in `chain_head`, so removing the newest events is seen too.
  `verify` names the first broken record after any edit, deletion or reorder.
- Never the body, an attachment or an identifier in clear: evidence samples
  arrive masked and are masked again here (defence in depth); the subject is
  kept only when `[audit] include_subject` is set.

SQLite (WAL) for one node, PostgreSQL for several (same schema, same
migrations). There is one writer per process: the event loop hands events to a
single worker thread, so the loop never waits on the database, and writers on
different nodes are serialised by a lock on the chain head row.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.events import (
    AuditEvent,
    MessageAccepted,
    MessageClassified,
    RecipientDecided,
    RecipientStatus,
    RecipientUpdated,
)
from policy.financial import mask_financial
from policy.model import Level, Protection
from policy.redact import mask_numbers

GENESIS = "0" * 64
INCIDENT_DEADLINE = 72 * 3600.0  # GDPR art. 33(1): notify within 72 hours of becoming aware

# A CPR number (ddmmyy-xxxx, with or without the dash). Masked to the date part,
# the form Datatilsynet accepts as not identifying on its own in a log.
_CPR = re.compile(r"(?<!\d)(\d{6})-?\d{4}(?!\d)")


def mask_identifiers(text: str) -> str:
    """CPR numbers (any that look like one), IBANs and card numbers masked: for what the log keeps."""
    return _CPR.sub(lambda m: f"{m.group(1)}-xxxx", mask_financial(text))


class AuditError(Exception):
    """The audit store cannot do what was asked (database unreachable, unknown id)."""


# -- events the CLI adds: operator acts and incidents ----------------------------------


@dataclass(frozen=True)
class OperatorAction:
    """An administrator or officer acted: release, delete, purge (art. 5(2): who and why)."""

    at: float
    operator: str
    action: str  # "quarantine.release", "quarantine.delete", "quarantine.purge"
    target: str  # e.g. the quarantine id
    reason: str
    message: str | None = None  # the audit record it concerns
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IncidentOpened:
    """Protected mail left below its policy: the start of an art. 33(5) breach record."""

    id: str
    at: float
    operator: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class IncidentUpdated:
    id: str
    at: float
    operator: str
    changes: dict[str, Any]


StoreEvent = AuditEvent | OperatorAction | IncidentOpened | IncidentUpdated

INCIDENT_FIELDS = (
    "status", "discovered_at", "what_happened", "cause", "data_categories",
    "data_subjects_estimate", "likely_consequences", "remedial_measures",
    "datatilsynet_notified", "datatilsynet_notified_at", "notes",
)


# -- canonical form and hashing ---------------------------------------------------------


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def to_plain(value: Any) -> Any:
    """Dataclasses, enums and tuples as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # dataclasses.asdict would keep enums as enums; the stored form is plain JSON
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def masked_classification(data: dict[str, Any]) -> dict[str, Any]:
    """A plain classification as anything kept at rest may hold it (audit, quarantine)."""
    # where and the unscannable reasons name attachments: a file called after an
    # IBAN or a card number must not put it in the log (policy.redact)
    for evidence in data.get("evidence", []):
        evidence["samples"] = [mask_numbers(mask_identifiers(s)) for s in evidence.get("samples", [])]
        evidence["where"] = [mask_numbers(w) for w in evidence.get("where", [])]
    data["unscannable"] = [mask_numbers(r) for r in data.get("unscannable", [])]
    return data


def event_content(event: StoreEvent, include_subject: bool) -> tuple[str, str | None, float, dict[str, Any]]:
    """(kind, subject id, time, data) of an event, as it is stored and hashed."""
    if isinstance(event, MessageAccepted):
        data = to_plain(event)
        data.pop("subject", None)
        if include_subject and event.subject is not None:
            data["subject"] = mask_identifiers(event.subject)
        return "message.accepted", event.id, event.received_at, data
    if isinstance(event, MessageClassified):
        return "message.classified", event.id, event.at, {
            "classification": masked_classification(to_plain(event.classification))}
    if isinstance(event, RecipientDecided):
        decided = {"decision": to_plain(event.decision), "certificate": to_plain(event.certificate),
                   "cipher": event.cipher}
        if event.smime is not None:
            decided["smime"] = to_plain(event.smime)
        return "recipient.decided", event.id, event.at, decided
    if isinstance(event, RecipientUpdated):
        data = to_plain(event)
        data.pop("id")
        data.pop("at")
        return "recipient.updated", event.id, event.at, data
    if isinstance(event, OperatorAction):
        data = to_plain(event)
        data.pop("at")
        return "operator." + event.action, event.message, event.at, data
    if isinstance(event, IncidentOpened):
        return "incident.opened", event.id, event.at, {"operator": event.operator, "fields": to_plain(event.fields)}
    if isinstance(event, IncidentUpdated):
        return "incident.updated", event.id, event.at, {"operator": event.operator, "changes": to_plain(event.changes)}
    raise AuditError(f"not an audit event: {type(event).__name__}")


def event_hash(seq: int, prev_hash: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({"seq": seq, "prev_hash": prev_hash, "event": body}).encode()).hexdigest()


# -- the fold: events -> records ---------------------------------------------------------


def new_record(message: str) -> dict[str, Any]:
    return {
        "id": message, "received_at": None, "message_id": None, "sender": None, "size": None,
        "client": None, "classification": None, "policy_rule": None, "recipients": [],
        "quarantine_id": None, "operator_actions": [], "incidents": [],
        "prev_hash": None, "hash": None, "updated_at": None,
    }


def _recipient(record: dict[str, Any], address: str) -> dict[str, Any]:
    for existing in record["recipients"]:
        if existing["address"].lower() == address.lower():
            return existing  # type: ignore[no-any-return]
    entry: dict[str, Any] = {
        "address": address, "action": None, "protection": None, "rule": None, "reason": "",
        "steps": [], "certificate": None, "cipher": None, "smime": None, "tls": None,
        "status": RecipientStatus.QUEUED.value, "smtp_response": "", "updated_at": None,
        "quarantine_id": None,
    }
    record["recipients"].append(entry)
    return entry


_ACTION_STATUS = {"send": "queued", "quarantine": "quarantined", "block": "blocked", "defer": "deferred"}


def fold_message(record: dict[str, Any], kind: str, at: float, data: dict[str, Any],
                 prev_hash: str, hash_: str) -> None:
    """Apply one event to a message record (pure: `verify` replays it).

    The record's `prev_hash` is the chain hash just before its first event (what the
    log looked like when the message arrived) and its `hash` the hash of its latest
    event, which by the chain covers everything logged before it.
    """
    if record["prev_hash"] is None:
        record["prev_hash"] = prev_hash
    record["hash"] = hash_
    record["updated_at"] = at
    if kind == "message.accepted":
        for key in ("received_at", "message_id", "sender", "size", "client"):
            record[key] = data.get(key)
        if "subject" in data:
            record["subject"] = data["subject"]
        for address in data.get("recipients", []):
            _recipient(record, address)
    elif kind == "message.classified":
        record["classification"] = data["classification"]
    elif kind == "recipient.decided":
        decision = data["decision"]
        entry = _recipient(record, decision["recipient"])
        entry.update(
            action=decision["action"], protection=decision["protection"], rule=decision["rule"],
            level=decision["level"], steps=decision["steps"],
            reason="; ".join(step["reason"] for step in decision["steps"]),
            certificate=data.get("certificate"), cipher=data.get("cipher"), smime=data.get("smime"),
            status=_ACTION_STATUS.get(decision["action"], "queued"), updated_at=at,
        )
        rules = sorted({r["rule"] for r in record["recipients"] if r.get("rule")})
        record["policy_rule"] = ", ".join(rules) or None
    elif kind == "recipient.updated":
        entry = _recipient(record, data["address"])
        entry.update(status=data["status"], smtp_response=data.get("smtp_response", ""), updated_at=at)
        if data.get("tls") is not None:
            entry["tls"] = data["tls"]
        if data.get("quarantine_id"):
            entry["quarantine_id"] = data["quarantine_id"]
            record["quarantine_id"] = data["quarantine_id"]
    elif kind.startswith("operator."):
        record["operator_actions"].append({
            "at": at, "action": data["action"], "operator": data["operator"], "target": data["target"],
            "reason": data["reason"], "details": data.get("details", {})})
    if record["received_at"] is None:
        record["received_at"] = at


def fold_incident(incident: dict[str, Any] | None, kind: str, at: float, data: dict[str, Any]) -> dict[str, Any]:
    if kind == "incident.opened" or incident is None:
        fields = dict(data.get("fields", {}))
        incident = {
            "id": None, "created_at": at, "created_by": data.get("operator"), "status": "open",
            "discovered_at": at, "what_happened": "", "cause": "", "messages": [], "recipients": [],
            "quarantine_id": None, "data_categories": [], "data_subjects_estimate": 0,
            "likely_consequences": "", "remedial_measures": "", "datatilsynet_notified": False,
            "datatilsynet_notified_at": None, "notes": "", "history": [],
        }
        incident.update(fields)
    else:
        for name, value in sorted(data.get("changes", {}).items()):  # as replayed from canonical JSON
            incident["history"].append({"at": at, "operator": data.get("operator"), "field": name,
                                        "old": incident.get(name), "new": value})
            incident[name] = value
    incident["deadline"] = float(incident["discovered_at"]) + INCIDENT_DEADLINE
    return incident


def below_policy_in_clear(record: dict[str, Any], entry: dict[str, Any]) -> bool:
    """A confidential/sensitive recipient got the message without encryption at all."""
    level = (record.get("classification") or {}).get("level") or entry.get("level")
    if level is None or not Level(level).protected or entry.get("status") != "delivered":
        return False
    if entry.get("protection") == Protection.SMIME.value:
        return False
    tls = entry.get("tls")
    return tls is None or tls.get("version") is None


def data_categories(classification: dict[str, Any] | None) -> list[str]:
    if not classification:
        return []
    return sorted({f"{e['detector']} ({e['level']})" for e in classification.get("evidence", [])})


def data_subjects_estimate(classification: dict[str, Any] | None) -> int:
    """Distinct CPR numbers in the message (art. 33(3)(a): the approximate number of data subjects).

    The classifier counts distinct full numbers without keeping them (`distinct`); a
    record made before it did falls back to the distinct masked samples, which stop at
    a handful and merge people born on the same day.
    """
    if not classification:
        return 0
    cpr = [e for e in classification.get("evidence", []) if e["detector"].startswith("cpr")]
    counted = sum(int(e.get("distinct") or 0) for e in cpr)
    samples = {s for e in cpr for s in e.get("samples", [])}
    return max(counted, len(samples))


# -- results --------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyProblem:
    seq: int | None
    record: str | None  # the message or incident id whose chain link is broken
    what: str


@dataclass(frozen=True)
class VerifyResult:
    events: int
    head_hash: str
    problems: tuple[VerifyProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class SearchFilter:
    since: float | None = None
    until: float | None = None
    sender: str | None = None
    recipient: str | None = None
    level: str | None = None
    protection: str | None = None
    status: str | None = None
    limit: int | None = None


# -- the database ---------------------------------------------------------------------

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE events (
            seq BIGINT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL,
            subject_id TEXT, body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""",
        "CREATE INDEX events_subject ON events (subject_id)",
        "CREATE TABLE chain_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
        f"INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, '{GENESIS}')",  # noqa: S608 - a constant
        """CREATE TABLE messages (
            id TEXT PRIMARY KEY, received_at DOUBLE PRECISION, sender TEXT, level TEXT,
            updated_at DOUBLE PRECISION, record TEXT NOT NULL)""",
        "CREATE INDEX messages_received ON messages (received_at)",
        """CREATE TABLE recipients (
            message_id TEXT NOT NULL, address TEXT NOT NULL, domain TEXT NOT NULL,
            protection TEXT, status TEXT, PRIMARY KEY (message_id, address))""",
        "CREATE INDEX recipients_address ON recipients (address)",
        """CREATE TABLE incidents (
            id TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL,
            record TEXT NOT NULL)""",
    ),
    (
        # Held messages shared by several nodes (gateway.quarantine.SharedStorage). IF NOT
        # EXISTS: gateways before this migration created the same table on first use.
        "CREATE TABLE IF NOT EXISTS quarantine (id TEXT PRIMARY KEY, meta TEXT NOT NULL, message BYTEA NOT NULL)",
    ),
)
# Migrations with nothing to do on SQLite (recorded there all the same, so the
# version numbers mean the same on both): on one node held messages are folders.
_POSTGRES_ONLY = frozenset({2})


class _Database:
    """SQLite or PostgreSQL behind the few calls the store makes; SQL is written with `?`."""

    def __init__(self, url: str, sqlite_path: str | None) -> None:
        self.url = url
        self.sqlite_path = sqlite_path
        self.postgres = sqlite_path is None

    def connect(self) -> Any:
        if self.postgres:
            import psycopg

            try:
                return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            except psycopg.Error as exc:
                raise AuditError(f"cannot connect to the audit database {_redacted(self.url)}: {exc}".splitlines()[0])
        assert self.sqlite_path is not None
        Path(self.sqlite_path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = sqlite3.connect(self.sqlite_path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an audit record acknowledged is an audit record kept
        return conn

    def sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.postgres else text

    def run(self, conn: Any, text: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(self.sql(text), tuple(params))

    @contextmanager
    def write(self, conn: Any) -> Iterator[None]:
        """One transaction holding the chain: other writers (threads, nodes) wait."""
        if self.postgres:
            with conn.transaction():
                conn.execute("SELECT seq FROM chain_head WHERE id = 1 FOR UPDATE")
                yield
        else:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def migrate(self, conn: Any) -> None:
        if self.postgres:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(7469021)")  # nodes starting together
                self._migrate(conn)
        else:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._migrate(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self, conn: Any) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                     "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, statements in enumerate(_MIGRATIONS, start=1):
            if version in done:
                continue
            for statement in statements if self.postgres or version not in _POSTGRES_ONLY else ():
                conn.execute(statement)
            self.run(conn, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                     (version, time.time()))


def migrate_postgres(conn: Any) -> None:
    """Bring the audit schema of a PostgreSQL connection up to date (for tables kept beside the audit's)."""
    _Database("", None).migrate(conn)


class AuditStore:
    """Implements `gateway.events.AuditSink`; the sync methods serve the CLI and reports."""

    def __init__(self, cfg: Config, database: str | None = None) -> None:
        url = database or cfg.audit.database
        sqlite_path = cfg.sqlite_path if database is None else (
            url[len("sqlite:///"):] if url.startswith("sqlite:///") else None)
        self.include_subject = cfg.audit.include_subject
        self.db = _Database(url, sqlite_path)
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()  # one writer per process
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
        self._pending: list[tuple[AuditEvent, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.db.migrate(self._conn())

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.db.connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    # -- the sink ----------------------------------------------------------------------

    async def append(self, event: AuditEvent) -> None:
        """Append one event; returns once it is committed.

        Group commit: events that arrive while a transaction is being written wait
        and go together in the next one, so a busy gateway pays one commit per
        batch instead of one per event, and each caller still gets durability.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((event, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await loop.run_in_executor(self._executor, self.append_many_sync, [e for e, _ in batch])
            except Exception as exc:  # every waiter of the batch learns the same failure
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.close_sync)

    def close_sync(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except Exception:  # noqa: S110 - closing at shutdown; nothing left to save
                    pass
            self._connections.clear()
        self._local = threading.local()

    # -- writing -----------------------------------------------------------------------

    def append_sync(self, event: StoreEvent) -> int:
        """Append one event (blocking); returns its sequence number."""
        return self.append_many_sync([event])[-1]

    def append_many_sync(self, events: Iterable[StoreEvent]) -> list[int]:
        """Append events in one transaction (bulk import, tests); returns their sequence numbers."""
        return [seq for seq, _subject in self._append(events)]

    def _append(self, events: Iterable[StoreEvent]) -> list[tuple[int, str | None]]:
        try:
            return self._append_locked(events)
        except AuditError:
            raise
        except Exception as exc:
            # A dropped PostgreSQL connection or a locked SQLite file: forget the connection
            # so the next append reconnects; the caller decides (the relay answers 4xx).
            self._discard_conn()
            raise AuditError(f"audit write failed: {exc}".splitlines()[0]) from exc

    def _discard_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            try:
                conn.close()
            except Exception:  # noqa: S110 - already broken; we only let go of it
                pass

    def _append_locked(self, events: Iterable[StoreEvent]) -> list[tuple[int, str | None]]:
        conn = self._conn()
        seqs: list[tuple[int, str | None]] = []
        with self._lock, self.db.write(conn):
            head_seq, head_hash = self.db.run(conn, "SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
            records: dict[str, dict[str, Any]] = {}
            for event in events:
                for kind, subject, at, data in self._expand(conn, event, records):
                    head_seq += 1
                    body = {"kind": kind, "subject": subject, "at": at, "data": data}
                    new_hash = event_hash(head_seq, head_hash, body)
                    self.db.run(conn, "INSERT INTO events (seq, at, kind, subject_id, body, prev_hash, hash) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (head_seq, at, kind, subject, canonical(body), head_hash, new_hash))
                    self._project(conn, records, kind, subject, at, data, head_hash, new_hash)
                    head_hash = new_hash
                    seqs.append((head_seq, subject))
            self.db.run(conn, "UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", (head_seq, head_hash))
            for record in records.values():
                if "incident" not in record:
                    self._save_message(conn, record)
        return seqs

    def _expand(self, conn: Any, event: StoreEvent,
                records: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str | None, float, dict[str, Any]]]:
        """The event, then any incident it makes necessary (protected mail delivered in clear)."""
        kind, subject, at, data = event_content(event, self.include_subject)
        if kind == "incident.opened" and not subject:
            subject = self._next_incident_id(conn, at, records)  # numbered under the chain lock
        yield kind, subject, at, data
        if kind == "recipient.updated" and subject is not None and data["status"] == "delivered":
            record = self._message(conn, records, subject)
            entry = next((r for r in record["recipients"] if r["address"].lower() == data["address"].lower()), None)
            if entry is not None and below_policy_in_clear(record, entry):
                # One event, one incident (art. 33(5) counts breaches, not log lines): a
                # "delivered" seen again after a restart, or the copy an administrator
                # released below policy (which opened its incident at the release), is
                # linked to the incident that already documents it.
                existing = self._incident_for(conn, records, subject, entry)
                if existing is not None:
                    if subject not in existing["messages"]:
                        yield "incident.updated", existing["id"], at, {
                            "operator": "sikkermail", "changes": {"messages": [*existing["messages"], subject]}}
                    return
                incident_id = self._next_incident_id(conn, at, records)
                fields = {
                    "discovered_at": at,
                    "what_happened": (f"A {record['classification']['level'] if record['classification'] else 'protected'} "
                                      f"message was delivered to {entry['address']} without encryption."),
                    "cause": "Delivered in clear although the policy requires encryption "
                             "(misconfiguration or delivery fault detected by the audit).",
                    "messages": [subject], "recipients": [entry["address"]],
                    "data_categories": data_categories(record["classification"]),
                    "data_subjects_estimate": data_subjects_estimate(record["classification"]),
                }
                yield "incident.opened", incident_id, at, {"operator": "sikkermail", "fields": fields}

    def _incident_for(self, conn: Any, records: dict[str, dict[str, Any]], message: str,
                      entry: dict[str, Any]) -> dict[str, Any] | None:
        """The incident already recording this recipient's copy of this message, if any."""
        rule = entry.get("rule") or ""
        released_from = rule.removeprefix("release:") if rule.startswith("release:") else None
        address = entry["address"].lower()
        incidents = {r[0]: json.loads(r[1]) for r in self.db.run(conn, "SELECT id, record FROM incidents").fetchall()}
        incidents.update({k: v["incident"] for k, v in records.items() if "incident" in v})
        for incident_id in sorted(incidents):
            incident = incidents[incident_id]
            if address not in {r.lower() for r in incident.get("recipients", [])}:
                continue
            if message in incident.get("messages", []) or (
                    released_from is not None and incident.get("quarantine_id") == released_from):
                found: dict[str, Any] = incident
                return found
        return None

    def _message(self, conn: Any, records: dict[str, dict[str, Any]], message: str) -> dict[str, Any]:
        if message not in records:
            row = self.db.run(conn, "SELECT record FROM messages WHERE id = ?", (message,)).fetchone()
            records[message] = json.loads(row[0]) if row else new_record(message)
        return records[message]

    def _next_incident_id(self, conn: Any, at: float, records: dict[str, dict[str, Any]]) -> str:
        year = time.strftime("%Y", time.gmtime(at))
        rows = self.db.run(conn, "SELECT id FROM incidents WHERE id LIKE ?", (f"INC-{year}-%",)).fetchall()
        taken = {r[0] for r in rows} | {k for k in records if k.startswith(f"INC-{year}-")}
        number = len(taken) + 1
        while f"INC-{year}-{number:04d}" in taken:
            number += 1
        return f"INC-{year}-{number:04d}"

    def _project(self, conn: Any, records: dict[str, dict[str, Any]], kind: str, subject: str | None,
                 at: float, data: dict[str, Any], prev_hash: str, hash_: str) -> None:
        if subject is None:
            return
        if kind.startswith("incident."):
            if subject in records:
                current: dict[str, Any] | None = records[subject]["incident"]
            else:
                row = self.db.run(conn, "SELECT record FROM incidents WHERE id = ?", (subject,)).fetchone()
                current = json.loads(row[0]) if row else None
            incident = fold_incident(current, kind, at, data)
            incident["id"] = subject
            records[subject] = {"incident": incident}
            self._save_incident(conn, incident)
            for message in incident.get("messages", []):  # linked when opened, or later by the audit
                record = self._message(conn, records, message)
                if subject not in record["incidents"]:
                    record["incidents"].append(subject)
            return
        fold_message(self._message(conn, records, subject), kind, at, data, prev_hash, hash_)

    def _save_message(self, conn: Any, record: dict[str, Any]) -> None:
        level = (record.get("classification") or {}).get("level")
        self.db.run(conn, "DELETE FROM messages WHERE id = ?", (record["id"],))
        self.db.run(conn, "INSERT INTO messages (id, received_at, sender, level, updated_at, record) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (record["id"], record["received_at"], record["sender"], level, record["updated_at"],
                     canonical(record)))
        self.db.run(conn, "DELETE FROM recipients WHERE message_id = ?", (record["id"],))
        for entry in record["recipients"]:
            self.db.run(conn, "INSERT INTO recipients (message_id, address, domain, protection, status) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (record["id"], entry["address"].lower(), entry["address"].rpartition("@")[2].lower(),
                         entry["protection"], entry["status"]))

    def _save_incident(self, conn: Any, incident: dict[str, Any]) -> None:
        self.db.run(conn, "DELETE FROM incidents WHERE id = ?", (incident["id"],))
        self.db.run(conn, "INSERT INTO incidents (id, created_at, status, record) VALUES (?, ?, ?, ?)",
                    (incident["id"], incident["created_at"], incident["status"], canonical(incident)))

    # -- incidents ---------------------------------------------------------------------

    def open_incident(self, *, operator: str, fields: dict[str, Any], at: float | None = None) -> dict[str, Any]:
        at = time.time() if at is None else at
        unknown = set(fields) - set(INCIDENT_FIELDS) - {"messages", "recipients", "quarantine_id"}
        if unknown:
            raise AuditError(f"unknown incident field(s): {', '.join(sorted(unknown))}")
        (_seq, incident_id), *_rest = self._append([IncidentOpened(id="", at=at, operator=operator, fields=fields)])
        assert incident_id is not None
        incident = self.incident(incident_id)
        assert incident is not None
        return incident

    def update_incident(self, incident_id: str, *, operator: str, changes: dict[str, Any],
                        at: float | None = None) -> dict[str, Any]:
        unknown = set(changes) - set(INCIDENT_FIELDS)
        if unknown:
            raise AuditError(f"unknown incident field(s): {', '.join(sorted(unknown))}")
        if self.incident(incident_id) is None:
            raise AuditError(f"no incident {incident_id}")
        self.append_sync(IncidentUpdated(id=incident_id, at=time.time() if at is None else at,
                                         operator=operator, changes=changes))
        incident = self.incident(incident_id)
        assert incident is not None
        return incident

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self.db.run(self._conn(), "SELECT record FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def incidents(self, status: str | None = None, since: float | None = None,
                  until: float | None = None) -> list[dict[str, Any]]:
        sql = "SELECT record FROM incidents WHERE 1 = 1"
        params: list[Any] = []
        if status:
            sql += " AND status = ?"
            params.append(status)
        if since is not None:
            sql += " AND created_at >= ?"
            params.append(since)
        if until is not None:
            sql += " AND created_at < ?"
            params.append(until)
        rows = self.db.run(self._conn(), sql + " ORDER BY created_at, id", params).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- reading -----------------------------------------------------------------------

    def record(self, message: str) -> dict[str, Any] | None:
        row = self.db.run(self._conn(), "SELECT record FROM messages WHERE id = ?", (message,)).fetchone()
        return json.loads(row[0]) if row else None

    def search(self, f: SearchFilter) -> list[dict[str, Any]]:
        sql = "SELECT m.record FROM messages m WHERE 1 = 1"
        params: list[Any] = []
        if f.since is not None:
            sql += " AND m.received_at >= ?"
            params.append(f.since)
        if f.until is not None:
            sql += " AND m.received_at < ?"
            params.append(f.until)
        if f.sender:
            sql += " AND lower(m.sender) LIKE ? ESCAPE '\\'"
            params.append(_like(f.sender))
        if f.level:
            sql += " AND m.level = ?"
            params.append(f.level)
        inner = []
        if f.recipient:
            inner.append("r.address LIKE ? ESCAPE '\\'")
            params.append(_like(f.recipient))
        if f.protection:
            inner.append("r.protection = ?")
            params.append(f.protection)
        if f.status:
            inner.append("r.status = ?")
            params.append(f.status)
        if inner:
            # only our fixed clauses are joined; every value is a parameter
            sql += " AND EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND " + " AND ".join(inner) + ")"  # noqa: S608
        sql += " ORDER BY m.received_at, m.id"
        if f.limit:
            sql += f" LIMIT {int(f.limit)}"
        return [json.loads(r[0]) for r in self.db.run(self._conn(), sql, params).fetchall()]

    def operator_actions(self, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        sql = "SELECT at, body FROM events WHERE kind LIKE 'operator.%'"
        params: list[Any] = []
        if since is not None:
            sql += " AND at >= ?"
            params.append(since)
        if until is not None:
            sql += " AND at < ?"
            params.append(until)
        if self.db.postgres:
            sql = sql.replace("%", "%%")
        rows = self.db.run(self._conn(), sql + " ORDER BY seq", params).fetchall()
        return [{"at": r[0], **json.loads(r[1])["data"]} for r in rows]

    # -- verification ------------------------------------------------------------------

    def verify(self, max_problems: int = 20, expect_head: str | None = None) -> VerifyResult:
        """Replay the chain; the first problem names the first broken record.

        `expect_head` ("HASH" or "SEQ:HASH", a head printed by an earlier verify and kept
        outside the database) anchors the chain: whoever can write the database can
        rebuild a whole chain that checks out, but cannot make it contain a hash it did
        not have -- each hash covers its sequence number and everything before it.
        """
        anchor_seq: int | None = None
        anchor_hash: str | None = None
        if expect_head is not None:
            text = expect_head.strip().lower()
            seq_text, _, anchor_hash = text.rpartition(":")
            if seq_text:
                if not seq_text.isdigit():
                    raise AuditError(f"--expect-head must be HASH or EVENTS:HASH, not {expect_head!r}")
                anchor_seq = int(seq_text)
            if not re.fullmatch(r"[0-9a-f]{64}", anchor_hash):
                raise AuditError(f"--expect-head: not a SHA-256 head hash: {expect_head!r}")
        anchor_found = False
        conn = self._conn()
        problems: list[VerifyProblem] = []
        expected_seq, expected_prev = 1, GENESIS
        records: dict[str, dict[str, Any]] = {}
        incidents: dict[str, dict[str, Any]] = {}
        count = 0
        cursor = self.db.run(conn, "SELECT seq, at, kind, subject_id, body, prev_hash, hash FROM events ORDER BY seq")
        for seq, at, kind, subject, body_text, prev_hash, hash_ in cursor:
            count += 1
            try:
                body = json.loads(body_text)
            except ValueError:
                body = None
            name = subject if body is None else body.get("subject", subject)
            if seq != expected_seq:
                problems.append(VerifyProblem(seq, name, f"events {expected_seq}..{seq - 1} are missing (deleted)"))
            elif prev_hash != expected_prev:
                problems.append(VerifyProblem(seq, name, "prev_hash does not match the previous event "
                                              "(an event was deleted, inserted or moved)"))
            if body is None or event_hash(seq, prev_hash, body) != hash_:
                problems.append(VerifyProblem(seq, name, "content does not match its hash (edited)"))
            elif (body["kind"], body["subject"], body["at"]) != (kind, subject, at):
                problems.append(VerifyProblem(seq, name, "kind, record id or time column edited"))
            expected_seq, expected_prev = seq + 1, hash_
            if hash_ == anchor_hash and (anchor_seq is None or anchor_seq == seq):
                anchor_found = True
            if body is not None and body.get("subject") is not None:
                if str(body["kind"]).startswith("incident."):
                    incident = fold_incident(incidents.get(body["subject"]), body["kind"], body["at"], body["data"])
                    incident["id"] = body["subject"]
                    incidents[body["subject"]] = incident
                    for message in incident.get("messages", []):
                        rec = records.setdefault(message, new_record(message))
                        if body["subject"] not in rec["incidents"]:
                            rec["incidents"].append(body["subject"])
                else:
                    rec = records.setdefault(body["subject"], new_record(body["subject"]))
                    fold_message(rec, body["kind"], body["at"], body["data"], prev_hash, hash_)
        if anchor_hash is not None and not anchor_found and not (anchor_seq == 0 and anchor_hash == GENESIS):
            at = f"event {anchor_seq}" if anchor_seq is not None else "any event"
            problems.insert(0, VerifyProblem(anchor_seq, None, f"the expected head {anchor_hash[:16]}... is not the "
                                             f"hash of {at}: the chain was rewritten or cut since it was noted"))
        head_seq, head_hash = self.db.run(conn, "SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
        if head_seq != expected_seq - 1 or head_hash != expected_prev:
            problems.append(VerifyProblem(head_seq, None, f"the chain head says {head_seq} events, "
                                          f"the log ends at {expected_seq - 1} (newest events removed)"))
        stored = {r[0]: r[1] for r in self.db.run(conn, "SELECT id, record FROM messages").fetchall()}
        for message in sorted(set(stored) | set(records)):
            if message not in stored:
                problems.append(VerifyProblem(None, message, "record missing from the message table (deleted)"))
            elif message not in records:
                problems.append(VerifyProblem(None, message, "record has no events in the chain (inserted)"))
            elif canonical(json.loads(stored[message])) != canonical(records[message]):
                problems.append(VerifyProblem(None, message, "record differs from its events (edited)"))
        # The search index too: an edited status there would hide a message from `log search`.
        indexed = {tuple(r) for r in self.db.run(
            conn, "SELECT message_id, address, domain, protection, status FROM recipients").fetchall()}
        expected = {(m, e["address"].lower(), e["address"].rpartition("@")[2].lower(), e["protection"], e["status"])
                    for m, rec in records.items() for e in rec["recipients"]}
        for message in sorted({row[0] for row in indexed ^ expected}):
            problems.append(VerifyProblem(None, message, "search index differs from the record (edited)"))
        stored_inc = {r[0]: r[1] for r in self.db.run(conn, "SELECT id, record FROM incidents").fetchall()}
        for incident_id in sorted(set(stored_inc) | set(incidents)):
            if incident_id not in stored_inc or incident_id not in incidents or \
                    canonical(json.loads(stored_inc[incident_id])) != canonical(incidents[incident_id]):
                problems.append(VerifyProblem(None, incident_id, "incident record differs from its events"))
        return VerifyResult(events=count, head_hash=expected_prev, problems=tuple(problems[:max_problems]))


def parse_time(text: str, *, end: bool = False) -> float:
    """A CLI time: "2026-11-01", "2026-11-01T08:30", ISO with offset, or "3d"/"12h" ago.

    Naive times are local time (what the officer reads on the wall clock). With
    `end`, a bare date means the end of that day, so --until 2026-11-30 includes it.
    """
    import datetime as dt

    from gateway.config import parse_duration

    text = text.strip()
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text) + (dt.timedelta(days=1) if end else dt.timedelta())
            return dt.datetime.combine(day, dt.time()).astimezone().timestamp()
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise AuditError(f"not a date or time: {text!r} (write 2026-11-01, 2026-11-01T08:30 or 3d)")
    return (when if when.tzinfo else when.astimezone()).timestamp()


def format_time(at: float | None) -> str:
    import datetime as dt

    if at is None:
        return "-"
    return dt.datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def operator_name(explicit: str | None) -> str:
    """Who acted: --operator, else the OS user (art. 5(2): the log says who)."""
    import getpass

    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def open_audit(cfg: Config, database: str | None = None) -> AuditStore:
    """The audit store of `cfg` (schema created or migrated); raises AuditError if unreachable."""
    try:
        return AuditStore(cfg, database)
    except AuditError:
        raise
    except Exception as exc:  # sqlite3.Error, psycopg.Error, OSError: one line for the CLI
        where = cfg.sqlite_path or _redacted(database or cfg.audit.database)
        raise AuditError(f"cannot open the audit database {where}: {exc}".splitlines()[0])


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


__all__ = [
    "AuditError", "AuditStore", "IncidentOpened", "IncidentUpdated", "OperatorAction", "SearchFilter",
    "StoreEvent", "to_plain", "VerifyProblem", "VerifyResult", "canonical", "format_time", "mask_identifiers", "masked_classification",
    "open_audit", "operator_name", "parse_time",
]
