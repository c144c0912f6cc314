"""Audit events the audit store could not take yet, kept in the spool until it can.

"Every message the gateway handles leaves a verifiable record" (GDPR art. 5(2):
the organisation must be able to *demonstrate* how each message left). The
relay does not stop delivering when the audit database is down — the spool is
the truth for the mail — so an event the store refuses must not be lost with a
log line. It is written durably (fsynced) to an outbox folder per message:

    <spool>/audit-outbox/<message id>/<number>.json

and a background task hands the outbox to the store, oldest first, with a
growing pause while the store keeps refusing, and at every start. Once a
message has something in its outbox, its later events queue behind it rather
than go straight to the store, so each message's events reach the chain in the
order they happened (they arrive late, the chain stays valid). An event whose
store write succeeded just before a crash may be handed over once more after
the restart; the audit fold takes a repeated event without change, and the
audit opens at most one incident per message and recipient.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from gateway import eventlog
from gateway.events import AuditEvent, AuditSink, event_from_plain, event_to_plain
from gateway.spool import fsync_dir

OUTBOX = "audit-outbox"  # folder in the spool root
FIRST_PAUSE = 1.0
LONGEST_PAUSE = 60.0


class AuditOutbox:
    """Between the queue and the audit store: straight through while the store answers."""

    def __init__(self, root: Path, sink: AuditSink) -> None:
        self.root = root
        self.sink = sink
        self.waiting: set[str] = self._on_disk()  # message ids with events in the outbox
        self._lock = asyncio.Lock()  # "is it waiting?" and "its outbox is empty now" never interleave
        self._files = threading.Lock()

    def _on_disk(self) -> set[str]:
        try:
            return {entry.name for entry in os.scandir(self.root) if entry.is_dir()}
        except FileNotFoundError:
            return set()

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args))

    # -- the queue's side --------------------------------------------------------------

    async def emit(self, event: AuditEvent) -> None:
        if event.id in self.waiting:
            async with self._lock:
                if event.id in self.waiting:
                    await self._keep(event)
                    return
        try:
            await self.sink.append(event)
            return
        except Exception as exc:
            eventlog.error("audit-append-failed", id=event.id, error=repr(exc), audit_event=type(event).__name__,
                           kept="audit-outbox")
        async with self._lock:
            self.waiting.add(event.id)
            await self._keep(event)

    async def _keep(self, event: AuditEvent) -> None:
        try:
            await self._io(self._write, event)
        except OSError as exc:  # the spool itself failing: nothing further down can keep it
            eventlog.error("audit-outbox-write-failed", id=event.id, error=repr(exc), audit_event=type(event).__name__)

    def _write(self, event: AuditEvent) -> None:
        with self._files:
            self.root.mkdir(mode=0o700, exist_ok=True)
            folder = self.root / event.id
            new_folder = not folder.is_dir()
            folder.mkdir(mode=0o700, exist_ok=True)
            numbers = [int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()]
            number = max(numbers, default=0) + 1
            work = folder / f".{number:08d}.tmp"
            fd = os.open(work, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps(event_to_plain(event), ensure_ascii=False, sort_keys=True).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(work, folder / f"{number:08d}.json")  # a crash mid-write leaves no half event behind
            fsync_dir(folder)
            if new_folder:
                fsync_dir(self.root)

    # -- replay ------------------------------------------------------------------------

    async def run(self, stopping: Callable[[], bool]) -> None:
        """Replay until stopped: at once on start, then with a pause that grows while the store refuses."""
        pause = FIRST_PAUSE
        while not stopping():
            if self.waiting:
                try:
                    await self.replay()
                    pause = FIRST_PAUSE
                except Exception as exc:
                    eventlog.warning("audit-outbox-replay-deferred", waiting=len(self.waiting), error=repr(exc),
                                     retry_in=pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, LONGEST_PAUSE)
                    continue
            await asyncio.sleep(FIRST_PAUSE)

    async def replay(self) -> int:
        """Hand every waiting event to the store, oldest first per message; raises at the first refusal."""
        sent = 0
        for message_id in sorted(self.waiting):
            sent += await self._replay_one(message_id)
        if sent:
            eventlog.event("audit-outbox-replayed", events=sent, waiting=len(self.waiting))
        return sent

    async def _replay_one(self, message_id: str) -> int:
        sent = 0
        for _round in range(1000):  # bounded: each round empties what was there when it began
            paths = await self._io(self._pending, message_id)
            if not paths:
                async with self._lock:
                    if not await self._io(self._pending, message_id):
                        await self._io(self._forget, message_id)
                        self.waiting.discard(message_id)
                        return sent
                continue
            for path in paths:
                try:
                    event = event_from_plain(json.loads(await self._io(path.read_text)))
                except (ValueError, KeyError, TypeError) as exc:
                    # Kept for an administrator, never dropped; the rest of the message goes on.
                    eventlog.error("audit-outbox-unreadable", id=message_id, file=path.name, error=repr(exc))
                    await self._io(path.rename, path.with_suffix(".unreadable"))
                    continue
                await self.sink.append(event)  # raises while the store is away: the file stays
                await self._io(path.unlink)
                sent += 1
        return sent

    def _pending(self, message_id: str) -> list[Path]:
        folder = self.root / message_id
        if not folder.is_dir():
            return []
        return sorted((p for p in folder.glob("*.json") if p.stem.isdigit()), key=lambda p: int(p.stem))

    def _forget(self, message_id: str) -> None:
        with self._files:
            try:
                (self.root / message_id).rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # an .unreadable file stays for an administrator; nothing left to replay
                eventlog.warning("audit-outbox-kept-unreadable", id=message_id)
