"""The spool: the one truth about every message the gateway has said 250 to.

Like Postfix's queue, the directories are the state machine, and `ls` shows
where every message is:

    tmp/<id>/       being written; never acknowledged; removed at start
    incoming/<id>/  on disk and acknowledged (250); waits for the pipeline
    active/<id>/    decided; deliveries in progress
    deferred/<id>/  waiting for its next attempt
    done/<id>/      every recipient final; the message body is gone, the
                    envelope and journal stay for `queue show` until purged
    audit-outbox/<id>/  audit events the audit database refused, waiting to be
                    replayed (gateway.audit_outbox); empty when the database is up

A message directory holds `message` (the bytes as received, with our Received
header), `envelope.json` (written once), `journal` (JSON lines, appended and
fsynced: decisions, attempts and per-recipient status) and any payloads the
pipeline made (`smime-N.eml`). Moving between states is one atomic rename of
the directory.

Durability: why no acknowledged message is lost, even on power loss
--------------------------------------------------------------------

"Lost" means: we said 250, and the message neither reached every recipient nor
sits in a quarantine, nor came back to its sender as a DSN or notice. A message
delivered twice after a crash is not lost (Postfix makes the same promise: at
least once). The spool needs a file system that journals metadata (ext4, XFS),
so that a rename is all-or-nothing; fsync(2) does the rest:

1. Acceptance (before 250), `accept`: `message` and `envelope.json` are
   written into tmp/<id>/ and each fsynced, an empty `journal` is created;
   tmp/<id>/ is fsynced (their names); the folder is renamed to incoming/<id> and incoming/ is fsynced (the
   new name). Only then does SMTP answer 250. A crash before that leaves, at
   most, a folder in tmp/, which was never acknowledged and `recover` removes
   (never one whose id is also in another state). The state folders and the
   spool root are fsynced when first made, so incoming/ itself cannot vanish.
2. Progress is journal lines: one write, one fsync, before anything acts on
   them. The journal's name is durable since acceptance (a journal created
   later, in a folder from an older version, fsyncs its folder). A line torn by power loss does not parse and never took effect; the
   next append starts on a fresh line, so it cannot swallow its successor.
   Payloads (S/MIME) are fsynced with their folder before the "decided" line
   naming them is written (gateway/smime.py encrypt_file_durably writes them
   under a temporary name, fsyncs, renames, fsyncs the folder): a truncated
   payload can never be sent as the message.
3. State moves (`move`) are renames NOT fsynced. The journal, not the folder,
   says what was done: every recipient's status is folded from it. A rename
   that power loss undoes puts the folder back one or more states, with the
   journal inside it (the directory's contents do not depend on its name):
   incoming/ reruns the pipeline for non-final recipients only; active/ and
   deferred/ resume the attempt from the journal. At worst a recipient
   whose delivery the journal did not yet record is delivered again.
4. Final outcomes are durable before the body goes: a "delivered" status is
   journaled only after the remote 250; a bounce's DSN and a block's notice are
   accepted into the spool (step 1) before the "notified" line; a held copy is
   fsynced in the quarantine folder (or committed in PostgreSQL) before the
   "quarantined" status.
5. `finish` runs only when the fsynced journal says every recipient is final.
   It deletes the body, then renames to done/ (not fsynced). A power loss in
   between may show a body-less folder in an earlier state: its journal still
   says final, so the queue finishes it again and never needs the body.
   Nothing is deleted that step 4 has not already made safe elsewhere.

So the fsyncs on the hot path are those of acceptance (four, as Postfix's
cleanup fsyncs its queue file and the kernel its rename), one per journal
append; moves cost none.
"""

from __future__ import annotations

import enum
import json
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class SpoolError(Exception):
    """The spool cannot do what was asked (missing message, bad state)."""


class State(enum.StrEnum):
    TMP = "tmp"
    INCOMING = "incoming"
    ACTIVE = "active"
    DEFERRED = "deferred"
    DONE = "done"




class Kind(enum.StrEnum):
    MAIL = "mail"  # from the internal mail server: classified and decided
    BOUNCE = "bounce"  # a DSN we generated: goes back to the sender, never classified
    NOTICE = "notice"  # a quarantine/block notice to the sender
    RELEASE = "release"  # an administrator released a held message with a chosen protection


@dataclass(frozen=True)
class Envelope:
    id: str
    sender: str
    recipients: tuple[str, ...]
    received_at: float
    client: str = ""
    helo: str = ""
    smtputf8: bool = False
    body_8bit: bool = False
    kind: Kind = Kind.MAIL
    override_protection: str | None = None  # RELEASE: the protection the administrator chose
    origin: str | None = None  # RELEASE: the quarantine id; BOUNCE/NOTICE: the message it is about
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["recipients"] = list(self.recipients)
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Envelope:
        data = json.loads(text)
        data["recipients"] = tuple(data["recipients"])
        data["kind"] = Kind(data.get("kind", "mail"))
        return cls(**data)


def new_id(now: float | None = None) -> str:
    """Sortable by arrival (hex milliseconds) and unique across nodes (random tail)."""
    millis = int((now if now is not None else time.time()) * 1000)
    return f"{millis:011X}{secrets.token_hex(5).upper()}"


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (names created, renamed, removed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Blocking file operations; the gateway calls them from an executor thread."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def ensure(self) -> None:
        made = False
        for state in State:
            if not (self.root / state).is_dir():
                (self.root / state).mkdir(parents=True, exist_ok=True, mode=0o700)
                made = True
        os.chmod(self.root, 0o700)
        if made:  # a state folder lost to a power loss would take its messages with it
            fsync_dir(self.root)

    def dir(self, state: State, message_id: str) -> Path:
        return self.root / state / message_id

    # -- acceptance -----------------------------------------------------------------

    def accept(self, envelope: Envelope, data: bytes) -> str:
        """Make the message durable in incoming/. Only after this returns may we say 250."""
        work = self.dir(State.TMP, envelope.id)
        work.mkdir(mode=0o700)
        try:
            _write_file(work / "message", data)
            _write_file(work / "envelope.json", envelope.to_json().encode())
            # The journal's name is made durable with the others (step 1 below), so no
            # later append needs a folder fsync; empty, it has no data to fsync.
            os.close(os.open(work / "journal", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            fsync_dir(work)
            os.rename(work, self.dir(State.INCOMING, envelope.id))
            fsync_dir(self.root / State.INCOMING)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return envelope.id

    def submit(
        self,
        sender: str,
        recipients: tuple[str, ...] | list[str],
        data: bytes,
        *,
        kind: Kind,
        override_protection: str | None = None,
        origin: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Queue a message the gateway itself makes or releases (bounce, notice, release)."""
        envelope = Envelope(
            id=new_id(),
            sender=sender,
            recipients=tuple(recipients),
            received_at=time.time(),
            client="local",
            smtputf8=any(ord(c) > 127 for c in sender + "".join(recipients)),
            body_8bit=any(b > 127 for b in data),
            kind=kind,
            override_protection=override_protection,
            origin=origin,
            extra=extra or {},
        )
        return self.accept(envelope, data)

    # -- moving and reading -----------------------------------------------------------

    def move(self, message_id: str, source: State, target: State) -> None:
        """Atomic, and deliberately not fsynced (module docstring, step 3): progress lives
        in the fsynced journal, so a rename lost in a crash only sends the message back
        to an earlier state, where the journal tells the queue what was already done."""
        os.rename(self.dir(source, message_id), self.dir(target, message_id))

    def locate(self, message_id: str) -> State:
        for state in (State.INCOMING, State.ACTIVE, State.DEFERRED, State.DONE):
            if self.dir(state, message_id).is_dir():
                return state
        raise SpoolError(f"no message {message_id} in the spool")

    def ids(self, state: State) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(self.root / state) if entry.is_dir())
        except FileNotFoundError:
            return []

    def envelope(self, message_id: str, state: State | None = None) -> Envelope:
        state = state or self.locate(message_id)
        return Envelope.from_json((self.dir(state, message_id) / "envelope.json").read_text())

    def message_path(self, message_id: str, state: State) -> Path:
        return self.dir(state, message_id) / "message"

    def append(self, message_id: str, state: State, record: dict[str, Any]) -> None:
        self.append_many(message_id, state, [record])

    def append_many(self, message_id: str, state: State, records: list[dict[str, Any]]) -> None:
        """Append journal lines durably, one write and one fsync. A torn last line is
        ignored when read: it never took effect."""
        line = b"".join((json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode() for r in records)
        path = self.dir(state, message_id) / "journal"
        created = False
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            created = True
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # after a line torn by a crash: never glue a record to it
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # a folder from before journals were made at acceptance
            fsync_dir(path.parent)  # the new file's name, or the lines would be durable but unfindable

    def journal(self, message_id: str, state: State) -> list[dict[str, Any]]:
        try:
            raw = (self.dir(state, message_id) / "journal").read_bytes()
        except FileNotFoundError:
            return []
        records: list[dict[str, Any]] = []
        for line in raw.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line torn by a crash mid-append: it never took effect
        return records

    def finish(self, message_id: str, state: State) -> None:
        """Every recipient is final (in the fsynced journal): drop the body and payloads,
        keep envelope and journal. Safe in this order: module docstring, step 5."""
        work = self.dir(state, message_id)
        for entry in work.iterdir():
            if entry.name not in ("envelope.json", "journal"):
                entry.unlink()
        self.move(message_id, state, State.DONE)

    # -- start-up ---------------------------------------------------------------------

    def recover(self) -> None:
        """Remove what was never acknowledged (tmp/); everything else resumes as it is."""
        self.ensure()
        for message_id in self.ids(State.TMP):
            if any(self.dir(state, message_id).is_dir() for state in State if state is not State.TMP):
                # Only a file system that does not journal renames could show both names;
                # removing this one could remove the acknowledged message with it.
                continue
            shutil.rmtree(self.dir(State.TMP, message_id), ignore_errors=True)

    def purge_done(self, older_than: float, now: float | None = None) -> int:
        cutoff = (now if now is not None else time.time()) - older_than
        removed = 0
        for message_id in self.ids(State.DONE):
            path = self.dir(State.DONE, message_id)
            try:
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def free_bytes(self) -> int:
        stat = os.statvfs(self.root)
        return stat.f_bavail * stat.f_frsize
