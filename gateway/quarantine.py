"""Held messages: stored for the gateway's user alone, released, deleted or purged on record.

A message is held when no protection its policy allows is possible for some of
its recipients. The copy is the most sensitive thing the gateway keeps at rest,
so (GDPR art. 32, art. 5(1)(e) storage limitation):

- on a single node (SQLite audit database) each held message is a folder
  `<quarantine path>/<id>/` (0700) holding `message` and `meta.json` (0600),
  written into a temporary folder and renamed, so a crash never leaves a
  half-held message;
- with several nodes (`[audit] database = "postgresql://..."`, SPEC: more than one
  machine) held messages live in that database, table `quarantine`, one row per
  message (one INSERT, so never half-held), so an administrator lists, releases
  or deletes them from any node; the message bytes are never logged, and a
  delete or purge is a DELETE of the row, not a flag;
- the metadata holds the decision and its reasons and the masked classification,
  never the body;
- every release, delete and retention purge is an audit event with the operator
  and the reason, and a release below the message's policy opens an incident
  (art. 33(5): the breach log records it, with the 72-hour clock);
- a release, delete or purge first claims the message (a lock on its folder or
  its row), so when two operators or two nodes act on the same id at once exactly
  one of them does, and a failure before the end leaves the message held.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.audit import (
    AuditStore,
    OperatorAction,
    _redacted,
    data_categories,
    data_subjects_estimate,
    masked_classification,
    migrate_postgres,
    to_plain,
)
from gateway.config import Config
from gateway.spool import Envelope, Kind, Spool, fsync_dir, new_id
from policy.model import Classification, Decision, Level, Protection

_ID = re.compile(r"^Q[0-9A-F]{16,40}$")

# How long a release/delete waits for another one acting on the same message (a
# spool write, two audit appends) before giving up rather than hanging the CLI.
CLAIM_WAIT = 30.0

# Strongest first; a release with a protection further down this list than
# everything the policy allowed is a release below policy.
STRENGTH = (Protection.SMIME, Protection.TLS_VERIFIED, Protection.TLS_ENFORCED, Protection.TLS_OPPORTUNISTIC)

# The shipped policy (SPEC), used when a held message's decision lists no steps.
DEFAULT_ALLOWED = {
    Level.PUBLIC: (Protection.TLS_OPPORTUNISTIC,),
    Level.CONFIDENTIAL: (Protection.SMIME, Protection.TLS_VERIFIED, Protection.TLS_ENFORCED),
    Level.SENSITIVE: (Protection.SMIME, Protection.TLS_VERIFIED),
}


class QuarantineError(Exception):
    """No such held message, or it cannot be acted on."""


@dataclass(frozen=True)
class HeldMessage:
    id: str
    held_at: float
    audit_id: str  # the audit record of the original message
    sender: str
    recipients: tuple[str, ...]  # the held ones
    level: Level
    allowed: tuple[Protection, ...]  # what the policy accepted, strongest first
    reasons: dict[str, str]  # recipient -> why it was held
    classification: dict[str, Any]
    size: int
    folder: Path | None = None  # on disk only; a shared (PostgreSQL) quarantine has no folder

    @property
    def message_path(self) -> Path:
        if self.folder is None:
            raise QuarantineError(f"{self.id} is held in the shared database, not in a folder")
        return self.folder / "message"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "held_at": self.held_at, "audit_id": self.audit_id, "sender": self.sender,
            "recipients": list(self.recipients), "level": self.level.value,
            "allowed": [p.value for p in self.allowed], "reasons": self.reasons,
            "classification": self.classification, "size": self.size,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any], folder: Path | None = None) -> HeldMessage:
        return cls(
            id=meta["id"], held_at=meta["held_at"], audit_id=meta["audit_id"], sender=meta["sender"],
            recipients=tuple(meta["recipients"]), level=Level(meta["level"]),
            allowed=tuple(Protection(p) for p in meta["allowed"]), reasons=meta["reasons"],
            classification=meta["classification"], size=meta["size"], folder=folder,
        )


class NotHeldError(QuarantineError):
    """The id names no held message (any more): released, deleted or purged, perhaps by another node."""


@dataclass(frozen=True)
class Claim:
    """A held message claimed for release or removal; it is gone once the claim ends without error."""

    held: HeldMessage
    message: Callable[[], bytes]  # the message itself, read only when a release needs it


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_private(source: Path, target: Path) -> int:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    size = 0
    try:
        with source.open("rb") as src:
            while chunk := src.read(1 << 20):
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return size


def allowed_protections(level: Level, decisions: list[Decision]) -> tuple[Protection, ...]:
    """What the policy would have accepted: the protections its decision chain tried."""
    tried = {step.protection for d in decisions for step in d.steps if step.protection is not None}
    if not tried:
        return DEFAULT_ALLOWED[level]
    return tuple(p for p in STRENGTH if p in tried)


def below_policy(chosen: Protection, allowed: tuple[Protection, ...]) -> bool:
    if not allowed:
        return False
    weakest = max(STRENGTH.index(p) for p in allowed)
    return STRENGTH.index(chosen) > weakest


# -- where held messages are kept ------------------------------------------------------


class _Storage(Protocol):
    """Keeps held messages; QuarantineStore decides what goes in and when they may leave."""

    def ensure(self) -> None: ...

    def put(self, quarantine_id: str, meta: dict[str, Any], message_path: Path) -> None: ...

    def get(self, quarantine_id: str) -> HeldMessage: ...

    def list_held(self) -> list[HeldMessage]: ...

    def claim(self, quarantine_id: str) -> AbstractContextManager[Claim]: ...


class FolderStorage:
    """One node: `<quarantine path>/<id>/{message,meta.json}`, 0700/0600."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)

    def put(self, quarantine_id: str, meta: dict[str, Any], message_path: Path) -> None:
        self.ensure()
        work = self.root / f".tmp-{quarantine_id}"
        work.mkdir(mode=0o700)
        try:
            _copy_private(message_path, work / "message")
            _write_private(work / "meta.json", json.dumps(meta, ensure_ascii=False, indent=1).encode())
            fsync_dir(work)
            os.rename(work, self.root / quarantine_id)
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    def get(self, quarantine_id: str) -> HeldMessage:
        folder = self.root / quarantine_id
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise NotHeldError(f"no held message {quarantine_id} in {self.root}") from None
        return HeldMessage.from_meta(meta, folder)

    def list_held(self) -> list[HeldMessage]:
        if not self.root.is_dir():
            return []
        held = []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if entry.is_dir() and _ID.match(entry.name):
                try:
                    held.append(self.get(entry.name))
                except (QuarantineError, ValueError, KeyError):
                    continue  # half-removed or foreign folder: not ours to show
        return held

    @contextmanager
    def claim(self, quarantine_id: str) -> Iterator[Claim]:
        folder = self.root / quarantine_id
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise NotHeldError(f"no held message {quarantine_id} in {self.root}") from None
        try:
            # flock, not a marker file: the kernel lets go if this process dies, so a
            # crash mid-release leaves the message held and claimable again.
            _flock_bounded(fd, quarantine_id)
            held = self.get(quarantine_id)  # whoever held the lock before us may have removed it
            yield Claim(held, (folder / "message").read_bytes)
            # Renamed first so a crash mid-removal never leaves a held message that looks whole.
            doomed = self.root / f".del-{quarantine_id}"
            os.rename(folder, doomed)
            shutil.rmtree(doomed)
            fsync_dir(self.root)
        finally:
            os.close(fd)


def _flock_bounded(fd: int, quarantine_id: str) -> None:
    deadline = time.monotonic() + CLAIM_WAIT
    for _attempt in range(int(CLAIM_WAIT / 0.05) + 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    raise QuarantineError(f"{quarantine_id} is being released or deleted by someone else; try again")


class SharedStorage:
    """Several nodes: table `quarantine` in the audit's PostgreSQL database.

    A connection per operation: holds are rare (an exception path) and come from
    executor threads, and a psycopg connection must not carry two threads'
    transactions. The message column is read only by a release; nothing here puts
    it into a log line or an error message.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._schema_ready = False

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        import psycopg  # only needed with a PostgreSQL audit database

        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise QuarantineError(
                f"cannot connect to the shared quarantine {_redacted(self.url)}: {exc}".splitlines()[0]) from exc
        try:
            if not self._schema_ready:
                # The table is one of the audit schema's migrations (schema_migrations):
                # a CLI that only touches the quarantine still finds it there.
                migrate_postgres(conn)
                self._schema_ready = True
            yield conn
        except psycopg.Error as exc:
            raise QuarantineError(f"shared quarantine: {exc}".splitlines()[0]) from exc
        finally:
            conn.close()

    def _missing(self, quarantine_id: str) -> NotHeldError:
        return NotHeldError(f"no held message {quarantine_id} in the shared quarantine ({_redacted(self.url)})")

    def ensure(self) -> None:
        with self._connection():
            pass

    def put(self, quarantine_id: str, meta: dict[str, Any], message_path: Path) -> None:
        message = message_path.read_bytes()
        with self._connection() as conn:
            conn.execute("INSERT INTO quarantine (id, meta, message) VALUES (%s, %s, %s)",
                         (quarantine_id, json.dumps(meta, ensure_ascii=False), message))

    def get(self, quarantine_id: str) -> HeldMessage:
        with self._connection() as conn:
            row = conn.execute("SELECT meta FROM quarantine WHERE id = %s", (quarantine_id,)).fetchone()
        if row is None:
            raise self._missing(quarantine_id)
        return HeldMessage.from_meta(json.loads(row[0]))

    def list_held(self) -> list[HeldMessage]:
        with self._connection() as conn:
            rows = conn.execute("SELECT meta FROM quarantine ORDER BY id").fetchall()
        return [HeldMessage.from_meta(json.loads(meta)) for (meta,) in rows]

    @contextmanager
    def claim(self, quarantine_id: str) -> Iterator[Claim]:
        from psycopg.errors import LockNotAvailable

        # The row lock lasts as long as the release: a second node's claim waits, then
        # finds the row gone. Deleting only at the end means a failure half-way (spool
        # full, audit unreachable, node killed) rolls back and the message stays held.
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(CLAIM_WAIT * 1000)}ms",))
            try:
                row = conn.execute("SELECT meta FROM quarantine WHERE id = %s FOR UPDATE",
                                   (quarantine_id,)).fetchone()
            except LockNotAvailable:
                raise QuarantineError(
                    f"{quarantine_id} is being released or deleted on another node; try again") from None
            if row is None:
                raise self._missing(quarantine_id)

            def message() -> bytes:
                return bytes(conn.execute("SELECT message FROM quarantine WHERE id = %s",
                                          (quarantine_id,)).fetchone()[0])

            yield Claim(HeldMessage.from_meta(json.loads(row[0])), message)
            conn.execute("DELETE FROM quarantine WHERE id = %s", (quarantine_id,))


# -- the quarantine ----------------------------------------------------------------------


class QuarantineStore:
    """Blocking operations; the gateway calls `hold` from an executor thread.

    Where held messages are kept follows `[audit] database`: PostgreSQL means several
    nodes share them, SQLite means this node's folder.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.root = Path(cfg.quarantine.path)
        self.storage: _Storage = (SharedStorage(cfg.audit.database) if cfg.sqlite_path is None
                                  else FolderStorage(self.root))

    def ensure(self) -> None:
        self.storage.ensure()

    def hold(self, envelope: Envelope, message_path: Path, decisions: list[Decision],
             classification: Classification, quarantine_id: str | None = None) -> str:
        """Copy the message in with its decision; returns the quarantine id. The queue
        passes an id it journaled first, so a hold repeated after a crash is one hold."""
        if quarantine_id is not None and self.holds(quarantine_id):
            return quarantine_id
        quarantine_id = quarantine_id or "Q" + new_id()
        held = [d for d in decisions if d.action.value == "quarantine"] or list(decisions)
        classification_data = masked_classification(to_plain(classification))
        meta = {
            "id": quarantine_id, "held_at": time.time(), "audit_id": envelope.id,
            "sender": envelope.sender, "recipients": [d.recipient for d in held],
            "level": classification.level.value,
            "allowed": [p.value for p in allowed_protections(classification.level, list(decisions))],
            "reasons": {d.recipient: d.reason for d in held},
            "decisions": [to_plain(d) for d in decisions], "classification": classification_data,
            "size": message_path.stat().st_size, "envelope": json.loads(envelope.to_json()),
        }
        self.storage.put(quarantine_id, meta, message_path)
        return quarantine_id

    def get(self, quarantine_id: str) -> HeldMessage:
        return self.storage.get(_checked(quarantine_id))

    def holds(self, quarantine_id: str) -> bool:
        try:
            self.get(quarantine_id)
        except NotHeldError:
            return False
        return True

    def list_held(self) -> list[HeldMessage]:
        return self.storage.list_held()

    def claim(self, quarantine_id: str) -> AbstractContextManager[Claim]:
        """Hold `quarantine_id` against every other release or delete; it is removed when the block ends
        without an error, and stays held if the block raises. Raises NotHeldError if it is gone."""
        return self.storage.claim(_checked(quarantine_id))

    def remove(self, quarantine_id: str) -> None:
        with self.claim(quarantine_id):
            pass

    def expired(self, now: float | None = None) -> list[HeldMessage]:
        cutoff = (time.time() if now is None else now) - self.cfg.quarantine.retention
        return [h for h in self.list_held() if h.held_at < cutoff]


def _checked(quarantine_id: str) -> str:
    # The id becomes a path component on disk: nothing but our own ids gets that far.
    if not _ID.match(quarantine_id):
        raise QuarantineError(f"not a quarantine id: {quarantine_id!r}")
    return quarantine_id


@dataclass(frozen=True)
class Released:
    quarantine_id: str
    spool_id: str
    protection: Protection
    incident: str | None


def release(cfg: Config, audit: AuditStore, quarantine_id: str, *, reason: str, operator: str,
            protection: Protection | None = None) -> Released:
    """Put a held message back into the pipeline with the chosen protection, on record."""
    if not reason.strip():
        raise QuarantineError("a release needs a reason")
    # Everything happens under the claim: a second release of the same id (another
    # operator, another node) waits and then finds it gone, so it opens no incident,
    # writes no audit event and queues no second copy.
    with QuarantineStore(cfg).claim(quarantine_id) as claim:
        held = claim.held
        chosen = protection or (held.allowed[-1] if held.allowed else Protection.TLS_ENFORCED)
        now = time.time()
        incident_id = None
        if held.level.protected and below_policy(chosen, held.allowed):
            # Art. 33(5): every breach is documented; a deliberate release below policy is
            # treated as one until the compliance officer has assessed it.
            incident = audit.open_incident(operator=operator, at=now, fields={
                "discovered_at": now,
                "what_happened": (f"{operator} released held {held.level.value} message {held.id} to "
                                  f"{', '.join(held.recipients)} with {chosen.value}, below its policy "
                                  f"({', '.join(p.value for p in held.allowed)})."),
                "cause": f"Administrator release below policy: {reason}",
                "messages": [held.audit_id], "recipients": list(held.recipients), "quarantine_id": held.id,
                "data_categories": data_categories(held.classification),
                "data_subjects_estimate": data_subjects_estimate(held.classification),
            })
            incident_id = incident["id"]
        details: dict[str, Any] = {"protection": chosen.value, "recipients": list(held.recipients),
                                   "below_policy": incident_id is not None}
        if incident_id:
            details["incident"] = incident_id
        # Recorded before the message moves: nothing leaves the quarantine unrecorded.
        audit.append_sync(OperatorAction(at=now, operator=operator, action="quarantine.release", target=held.id,
                                         reason=reason, message=held.audit_id, details=details))
        spool = Spool(cfg.spool.path)
        spool.ensure()
        spool_id = spool.submit(held.sender, held.recipients, claim.message(), kind=Kind.RELEASE,
                                override_protection=chosen.value, origin=held.id)
        audit.append_sync(OperatorAction(at=time.time(), operator=operator, action="quarantine.requeued",
                                         target=held.id, reason=reason, message=held.audit_id,
                                         details={"spool_id": spool_id}))
    return Released(held.id, spool_id, chosen, incident_id)


def delete(cfg: Config, audit: AuditStore, quarantine_id: str, *, reason: str, operator: str) -> HeldMessage:
    if not reason.strip():
        raise QuarantineError("a delete needs a reason")
    with QuarantineStore(cfg).claim(quarantine_id) as claim:
        held = claim.held
        audit.append_sync(OperatorAction(at=time.time(), operator=operator, action="quarantine.delete",
                                         target=held.id, reason=reason, message=held.audit_id,
                                         details={"recipients": list(held.recipients)}))
    return held


def purge(cfg: Config, audit: AuditStore, *, operator: str, now: float | None = None) -> list[HeldMessage]:
    """Remove what is past `[quarantine] retention` (art. 5(1)(e)), each removal on record."""
    store = QuarantineStore(cfg)
    days = cfg.quarantine.retention / 86400
    purged = []
    for held in store.expired(now):
        try:
            with store.claim(held.id):
                audit.append_sync(OperatorAction(at=time.time(), operator=operator, action="quarantine.purge",
                                                 target=held.id, reason=f"retention of {days:g} days expired",
                                                 message=held.audit_id, details={"held_at": held.held_at}))
        except NotHeldError:
            continue  # every node purges hourly: another one (or a release) got there first
        purged.append(held)
    return purged
