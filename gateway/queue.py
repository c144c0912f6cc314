"""The queue manager: moves each message through the spool states and delivers it.

incoming -> (pipeline: classify, decide, protect; journal) -> active ->
(delivery per domain and protection) -> done, or -> deferred -> active again at
its next retry time. Held and blocked recipients get a notice to the sender;
recipients that fail permanently get a DSN. After `max_age` protected mail is
quarantined, never sent weaker; public mail is bounced.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from gateway import eventlog
from gateway.audit_outbox import OUTBOX, AuditOutbox
from gateway.config import Config, parse_host_port
from gateway.delivery import Deliverer, DeliveryJob, DeliverySettings, Outcome, RecipientResult
from gateway.dsn import FailedRecipient, build_dsn, header_block
from gateway.events import (
    AuditEvent,
    AuditSink,
    MessageAccepted,
    MessageClassified,
    RecipientDecided,
    RecipientStatus,
    RecipientUpdated,
    TlsSession,
)
from gateway.journal import MessageState, RecipientState, classification_record, fold
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline, Planned, header_bytes, read_header_block, read_headers
from gateway.spool import Envelope, Kind, Spool, State, new_id
from policy.model import Action, Classification, Decision, Level, Protection, Step
from tlsprobe.mx import MxAnswer, MxMemo, make_resolver, resolve_mx

T = TypeVar("T")

FLUSH_REQUEST = "flush.request"  # `sikkermail queue flush` drops this file into the spool root


def pipeline_limit(cfg: Config) -> int:
    """[delivery] max_in_pipeline; 0 means twice the CPU cores, at least 4 (classification
    and encryption are CPU-bound: more at once only holds more bodies in memory)."""
    if cfg.delivery.max_in_pipeline > 0:
        return cfg.delivery.max_in_pipeline
    return max(4, 2 * (os.cpu_count() or 1))


@dataclass
class _Timer:
    due: float
    message_id: str

    def __lt__(self, other: _Timer) -> bool:
        return self.due < other.due


class QueueManager:
    def __init__(
        self,
        cfg: Config,
        spool: Spool,
        pipeline: Pipeline,
        audit: AuditSink,
        metrics: Metrics,
    ) -> None:
        self.cfg = cfg
        self.spool = spool
        self.pipeline = pipeline
        self.audit = audit
        self.metrics = metrics
        self._quarantine: Any | None = None
        self.deliverer = Deliverer(DeliverySettings(
            hostname=cfg.server.hostname,
            mx_port=cfg.delivery.mx_port,
            connect_timeout=cfg.delivery.connect_timeout,
            delivery_timeout=cfg.delivery.delivery_timeout,
            min_tls_version=cfg.tls.min_version,
            ca_file=cfg.tls.ca_file or None,
        ))
        nameservers = [parse_host_port(n, default_port=53) for n in cfg.dns.nameservers]
        self.resolver = make_resolver(nameservers, cfg.dns.timeout)
        self.mx_memo = MxMemo()  # complete answers within their TTL (tlsprobe.mx)
        self.global_slots = asyncio.Semaphore(cfg.delivery.max_concurrency)
        self.domain_slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(cfg.delivery.max_per_domain))
        # Each message in the pipeline holds its whole body in memory: bounded, so that a
        # restart with a large backlog reads a few bodies at a time, not all of them.
        self.pipeline_slots = asyncio.Semaphore(pipeline_limit(cfg))
        self.in_pipeline = 0  # messages inside a pipeline slot now (logged with "classified")
        # Messages in incoming/ whose pipeline failed: how often, and when the next try is due.
        self._pipeline_failures: dict[str, int] = {}
        self._attempt_failures: dict[str, int] = {}  # active/ messages whose attempt raised, for backoff
        self._pipeline_due: dict[str, float] = {}
        self.ready: asyncio.Queue[str] = asyncio.Queue()
        self.timers: list[_Timer] = []
        self.busy: set[str] = set()
        # Where a message is when the queue itself put it there; saves a directory search
        # per message on the hot path. Checked with one stat before it is trusted.
        self._known: dict[str, State] = {}
        self._resumed: set[str] = set()  # messages found on disk at start: their audit is reconciled
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.wakeup = asyncio.Event()
        self.outbox = AuditOutbox(spool.root / OUTBOX, audit)

    # -- helpers -----------------------------------------------------------------------

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args))

    async def _emit(self, event: AuditEvent) -> None:
        # Never lost when the audit store is away: kept in the spool's outbox, replayed in order.
        await self.outbox.emit(event)

    def _quarantine_store(self) -> Any:
        """Created on first use: most gateways hold mail rarely."""
        if self._quarantine is None:
            from gateway.quarantine import QuarantineStore

            self._quarantine = QuarantineStore(self.cfg)
        return self._quarantine

    # -- start, stop, intake -----------------------------------------------------------

    async def start(self) -> None:
        await self._io(self.spool.recover)
        self._resumed = set(self.spool.ids(State.ACTIVE)) | set(self.spool.ids(State.DEFERRED))
        for message_id in self.spool.ids(State.INCOMING) + self.spool.ids(State.ACTIVE):
            self.ready.put_nowait(message_id)  # where each one is gets looked up: a restart is rare
        for message_id in self.spool.ids(State.DEFERRED):
            state = fold(self.spool.envelope(message_id, State.DEFERRED).recipients,
                         self.spool.journal(message_id, State.DEFERRED))
            self._schedule(message_id, state.next_attempt or time.time())
        eventlog.event("queue-started", ready=self.ready.qsize(), deferred=len(self.timers))

    def accepted(self, envelope: Envelope) -> None:
        self.accepted_id(envelope.id)

    def accepted_id(self, message_id: str) -> None:
        """A message just made durable in incoming/ (by this process or an intake process)."""
        self._known[message_id] = State.INCOMING
        self.ready.put_nowait(message_id)

    def _schedule(self, message_id: str, due: float) -> None:
        self._known[message_id] = State.DEFERRED
        heapq.heappush(self.timers, _Timer(due, message_id))
        self.wakeup.set()

    async def run(self) -> None:
        """Dispatch ready messages; wake deferred ones when due; notice new files in incoming/."""
        scanner = asyncio.create_task(self._scan_loop())
        replayer = asyncio.create_task(self.outbox.run(lambda: self.stopping))
        try:
            while not self.stopping:
                try:
                    message_id = await asyncio.wait_for(self.ready.get(), timeout=self._next_wait())
                except TimeoutError:
                    message_id = None
                if message_id is not None:
                    self._spawn(message_id)
                now = time.time()
                while self.timers and self.timers[0].due <= now:
                    timer = heapq.heappop(self.timers)
                    self._spawn(timer.message_id)
        finally:
            scanner.cancel()
            replayer.cancel()

    def _next_wait(self) -> float:
        if not self.timers:
            return 1.0
        return max(0.0, min(1.0, self.timers[0].due - time.time()))

    async def _scan_loop(self) -> None:
        while not self.stopping:
            await asyncio.sleep(1.0)
            try:
                for message_id in self.spool.ids(State.INCOMING):
                    # one whose pipeline failed waits for its own timer (backoff), not this scan
                    if message_id not in self.busy and message_id not in self._pipeline_due:
                        self.ready.put_nowait(message_id)
                flush = self.spool.root / FLUSH_REQUEST
                if flush.exists():
                    flush.unlink(missing_ok=True)
                    self.flush()
                self._refresh_gauges()
            except OSError as exc:
                eventlog.error("spool-scan-failed", error=str(exc))

    def flush(self) -> None:
        """Retry every deferred message now."""
        for timer in self.timers:
            timer.due = 0.0
        heapq.heapify(self.timers)
        self.wakeup.set()

    def _refresh_gauges(self) -> None:
        for state in (State.INCOMING, State.ACTIVE, State.DEFERRED):
            self.metrics.queue_size.labels(state.value).set(len(self.spool.ids(state)))

    def _spawn(self, message_id: str) -> None:
        if message_id in self.busy or self.stopping:
            return
        self.busy.add(message_id)
        task = asyncio.create_task(self._handle(message_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, grace: float) -> None:
        """SIGTERM: take no new work, let in-flight deliveries finish (bounded)."""
        self.stopping = True
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace)
        for task in list(self.tasks):
            task.cancel()

    # -- one message -------------------------------------------------------------------

    async def _handle(self, message_id: str) -> None:
        try:
            hint = self._known.pop(message_id, None)
            if hint is not None and self.spool.dir(hint, message_id).is_dir():
                state = hint
            else:
                state = self.spool.locate(message_id)
            if state is State.INCOMING:
                finished = await self._run_pipeline(message_id)
                self._pipeline_failures.pop(message_id, None)
                self._pipeline_due.pop(message_id, None)
                if finished:
                    return
                state = State.ACTIVE
            elif state is State.DEFERRED:
                await self._io(self.spool.move, message_id, State.DEFERRED, State.ACTIVE)
                state = State.ACTIVE
            if state is State.ACTIVE:
                if message_id in self._resumed:
                    self._resumed.discard(message_id)
                    await self._reconcile_audit(message_id)
                await self._attempt(message_id)
                self._attempt_failures.pop(message_id, None)
        except Exception as exc:
            # The message stays where it is on disk; try again later rather than lose it.
            eventlog.error("message-handling-failed", id=message_id, error=repr(exc), exc_info=True)
            if self.spool.dir(State.INCOMING, message_id).is_dir():
                await self._pipeline_failed(message_id, exc)
            else:
                # On the retry schedule, not every retry[0]: a message that cannot be read
                # stays where it is (never sent, never dropped) without hammering the log.
                failures = self._attempt_failures.get(message_id, 0) + 1
                self._attempt_failures[message_id] = failures
                retry = self.cfg.delivery.retry
                delay = retry[min(failures - 1, len(retry) - 1)]
                eventlog.warning("attempt-retry", id=message_id, failures=failures, delay=delay)
                self._schedule(message_id, time.time() + delay)
        finally:
            self.busy.discard(message_id)

    @contextlib.asynccontextmanager
    async def _pipeline_slot(self) -> AsyncIterator[None]:
        async with self.pipeline_slots:
            self.in_pipeline += 1
            try:
                yield
            finally:
                self.in_pipeline -= 1

    def _arrival(self, message_id: str) -> float:
        """When the message was accepted, even if its envelope cannot be read: our ids
        begin with the arrival time in hex milliseconds (spool.new_id)."""
        try:
            return self.spool.envelope(message_id, State.INCOMING).received_at
        except Exception:
            try:
                return int(message_id[:11], 16) / 1000.0
            except ValueError:
                return self.spool.dir(State.INCOMING, message_id).stat().st_mtime

    async def _pipeline_failed(self, message_id: str, exc: Exception) -> None:
        """The pipeline raised for a message in incoming/: retry on the delivery schedule,
        not every second, and at max_age hold it. A message that could not be classified
        could hold anything, so it is quarantined whatever it might have turned out to be,
        never sent."""
        failures = self._pipeline_failures.get(message_id, 0) + 1
        self._pipeline_failures[message_id] = failures
        now = time.time()
        try:
            arrival = self._arrival(message_id)
            if now - arrival >= self.cfg.delivery.max_age:
                await self._quarantine_unprocessed(message_id, exc)
                self._pipeline_failures.pop(message_id, None)
                self._pipeline_due.pop(message_id, None)
                return
        except Exception as hold_exc:  # cannot even be held: it stays in incoming/, retried, never dropped
            eventlog.error("pipeline-hold-failed", id=message_id, error=repr(hold_exc))
            arrival = now - self.cfg.delivery.max_age
        retry = self.cfg.delivery.retry
        delay = retry[min(failures - 1, len(retry) - 1)]
        deadline = arrival + self.cfg.delivery.max_age
        # Past max_age only when the hold itself failed: keep trying at the slowest pace.
        due = min(now + delay, deadline) if deadline > now else now + retry[-1]
        self._pipeline_due[message_id] = due
        self._known[message_id] = State.INCOMING
        heapq.heappush(self.timers, _Timer(due, message_id))
        self.wakeup.set()
        eventlog.warning("pipeline-retry", id=message_id, failures=failures, delay=round(due - now, 3))

    async def _quarantine_unprocessed(self, message_id: str, exc: Exception) -> None:
        envelope = self.spool.envelope(message_id, State.INCOMING)
        folder = self.spool.dir(State.INCOMING, message_id)
        state = fold(envelope.recipients, self.spool.journal(message_id, State.INCOMING))
        why = f"could not be classified within max_age ({type(exc).__name__})"
        # Unknown content counts as confidential (the shipped policy's rule for what
        # cannot be scanned); the exception text stays in the log, out of the audit.
        classification = Classification(Level.CONFIDENTIAL, scanned=False, unscannable=(why,))
        message_header_id = None
        with contextlib.suppress(OSError):
            message_header_id = (await self._io(read_header_block, folder / "message")).get("Message-ID")
        size = 0
        with contextlib.suppress(OSError):
            size = (folder / "message").stat().st_size
        await self._emit(MessageAccepted(
            id=message_id, received_at=envelope.received_at, message_id=message_header_id, sender=envelope.sender,
            size=size, recipients=envelope.recipients, client=envelope.client, subject=None))
        await self._emit(MessageClassified(message_id, time.time(), classification))
        decisions = [Decision(r.address, Level.CONFIDENTIAL, Action.QUARANTINE, None, "max_age",
                              (Step(None, False, why),)) for r in state.pending()]
        for d in decisions:
            await self._emit(RecipientDecided(message_id, time.time(), d, None, None))
        if decisions:
            await self._hold(message_id, envelope, classification, decisions, State.INCOMING)
        await self._io(self.spool.finish, message_id, State.INCOMING)
        eventlog.event("done", id=message_id, unprocessed=True)

    async def _reconcile_audit(self, message_id: str) -> None:
        """After a crash, the journal may hold final statuses whose audit events died with
        the process (the journal line is written first). Re-emit them: folding the same
        status twice changes nothing in the record, a missing one would leave it "queued"."""
        envelope = self.spool.envelope(message_id, State.ACTIVE)
        state = fold(envelope.recipients, self.spool.journal(message_id, State.ACTIVE))
        for r in state.recipients.values():
            if not r.final:
                continue
            tls = TlsSession(**r.tls) if r.tls else None
            await self._emit(RecipientUpdated(message_id, time.time(), r.address, r.status, r.response, tls,
                                              quarantine_id=r.quarantine_id))

    async def _run_pipeline(self, message_id: str) -> bool:
        """Classify, decide, protect, journal, move to active/. True when the message turned
        out to be finished already (see spool.py: a finish whose rename a power loss undid)."""
        envelope = self.spool.envelope(message_id, State.INCOMING)
        folder = self.spool.dir(State.INCOMING, message_id)
        before = fold(envelope.recipients, self.spool.journal(message_id, State.INCOMING))
        if before.complete:
            await self._io(self.spool.finish, message_id, State.INCOMING)
            return True
        todo = [r.address for r in before.pending()]  # a rerun never re-decides a final recipient
        async with self._pipeline_slot():
            data = await self._io((folder / "message").read_bytes)
            headers = read_headers(data)
            subject = str(headers.get("Subject", "")) if self.cfg.audit.include_subject else None
            await self._emit(MessageAccepted(
                id=message_id, received_at=envelope.received_at, message_id=headers.get("Message-ID"),
                sender=envelope.sender, size=len(data),
                recipients=envelope.recipients, client=envelope.client, subject=subject))
            classification = await self.pipeline.classify(envelope, data)
            del data
            eventlog.event("classified", id=message_id, classification=classification.level.value,
                           evidence=[e.detector for e in classification.evidence], in_pipeline=self.in_pipeline)
        await self._emit(MessageClassified(message_id, time.time(), classification))
        # Deciding waits on the network (certificate directories, TLS probes), not on memory:
        # outside the slot, so a slow directory does not starve classification.
        decided = await self.pipeline.decide(envelope, classification, todo)
        async with self._pipeline_slot():
            planned = await self.pipeline.protect(folder, decided)
        records: list[dict[str, Any]] = [classification_record(classification)]
        records += [self._decided_record(p) for p in planned]
        # S/MIME payloads the records name are on disk already (smime.encrypt_file_durably)
        await self._io(self.spool.append_many, message_id, State.INCOMING, records)
        for p in planned:
            await self._emit(self._decided_event(message_id, p))
        await self._io(self.spool.move, message_id, State.INCOMING, State.ACTIVE)
        await self._settle_undeliverable(message_id, envelope, classification, planned, State.ACTIVE)
        return False


    @staticmethod
    def _decided_record(p: Planned) -> dict[str, Any]:
        d = p.decision
        return {"e": "decided", "rcpt": d.recipient, "action": d.action.value,
                "protection": d.protection.value if d.protection else None, "level": d.level.value,
                "rule": d.rule, "reason": d.reason, "payload": p.payload, "at": time.time(),
                "cipher": p.cipher}

    @staticmethod
    def _decided_event(message_id: str, p: Planned) -> RecipientDecided:
        return RecipientDecided(message_id, time.time(), p.decision, p.certificate, p.cipher, smime=p.smime)

    async def _settle_undeliverable(self, message_id: str, envelope: Envelope, classification: Classification,
                                    planned: list[Planned], state: State) -> None:
        """Quarantine and block what the decision says; notify the sender once per kind."""
        held = [p.decision for p in planned if p.decision.action is Action.QUARANTINE]
        blocked = [p.decision for p in planned if p.decision.action is Action.BLOCK]
        if held:
            await self._hold(message_id, envelope, classification, held, state)
        if blocked:
            records = [{"e": "status", "rcpt": d.recipient, "status": RecipientStatus.BLOCKED.value,
                        "response": f"550 5.7.1 blocked by policy: {d.reason}", "at": time.time()}
                       for d in blocked]
            await self._io(self.spool.append_many, message_id, state, records)
            for d in blocked:
                self.metrics.blocked.inc()
                await self._emit(RecipientUpdated(message_id, time.time(), d.recipient, RecipientStatus.BLOCKED,
                                                  f"550 5.7.1 blocked by policy: {d.reason}"))
            await self._notify(message_id, envelope, "block", blocked, None, state)

    async def _hold(self, message_id: str, envelope: Envelope, classification: Classification,
                    decisions: list[Decision], state: State) -> None:
        folder = self.spool.dir(state, message_id)
        # A hold a crash interrupted left its id in the journal: the same id again, so the
        # message is held, and its sender told, once.
        holding = fold(envelope.recipients, self.spool.journal(message_id, state)).holding
        quarantine_id = next((holding[d.recipient] for d in decisions if d.recipient in holding), None)
        if quarantine_id is None:
            quarantine_id = "Q" + new_id()
            await self._io(self.spool.append_many, message_id, state, [
                {"e": "holding", "quarantine_id": quarantine_id, "rcpts": [d.recipient for d in decisions],
                 "at": time.time()}])
        quarantine_id = await self._io(self._quarantine_store().hold, envelope, folder / "message", decisions,
                                       classification, quarantine_id)
        records = [{"e": "status", "rcpt": d.recipient, "status": RecipientStatus.QUARANTINED.value,
                    "response": f"held: {d.reason}", "quarantine_id": quarantine_id, "at": time.time()}
                   for d in decisions]
        await self._io(self.spool.append_many, message_id, state, records)
        for d in decisions:
            self.metrics.quarantined.inc()
            await self._emit(RecipientUpdated(message_id, time.time(), d.recipient, RecipientStatus.QUARANTINED,
                                              f"held: {d.reason}", quarantine_id=quarantine_id))
        eventlog.event("quarantined", id=message_id, quarantine_id=quarantine_id, recipients=len(decisions))
        await self._notify(message_id, envelope, "quarantine", decisions, quarantine_id, state)

    async def _notify(self, message_id: str, envelope: Envelope, kind: str, decisions: list[Decision],
                      quarantine_id: str | None, state: State) -> None:
        tag = f"{kind}:{quarantine_id or ''}"
        if not envelope.sender or envelope.kind in (Kind.BOUNCE, Kind.NOTICE):
            return  # nobody to tell (null sender), and never a notice about a notice
        if tag in fold(envelope.recipients, self.spool.journal(message_id, state)).notified:
            return
        folder = self.spool.dir(state, message_id)
        headers = await self._io(read_header_block, folder / "message")  # not the whole body
        # The subject may itself be sensitive: only echoed back when configured.
        subject = (str(headers.get("Subject", "")) or None) if self.cfg.quarantine.notice_subject else None
        from gateway.notices import build_notice

        notice = build_notice(kind=kind, envelope=envelope, decisions=decisions, quarantine_id=quarantine_id,
                              subject=subject, from_address=self._bounce_sender(),
                              hostname=self.cfg.server.hostname)
        notice_id = await self._io(partial(self.spool.submit, "", [envelope.sender], notice,
                                           kind=Kind.NOTICE, origin=message_id))
        await self._io(self.spool.append_many, message_id, state, [{"e": "notified", "what": tag, "id": notice_id}])
        self.ready.put_nowait(notice_id)

    def _bounce_sender(self) -> str:
        return self.cfg.delivery.bounce_sender or f"MAILER-DAEMON@{self.cfg.server.hostname}"

    # -- delivery attempt --------------------------------------------------------------

    async def _attempt(self, message_id: str) -> None:
        envelope = self.spool.envelope(message_id, State.ACTIVE)
        folder = self.spool.dir(State.ACTIVE, message_id)
        state = fold(envelope.recipients, self.spool.journal(message_id, State.ACTIVE))
        # The classification is journaled before the move to active/; should it still be
        # missing (a spool from elsewhere, a damaged journal), the message is what cannot
        # be read: confidential, never public (fail closed).
        classification = state.classification or Classification(
            Level.CONFIDENTIAL, scanned=False, unscannable=("no classification in the journal",))
        unsettled = [r for r in state.pending() if r.action in (Action.QUARANTINE.value, Action.BLOCK.value)]
        if unsettled:
            # A crash after the "decided" lines and before their status lines: hold or block
            # now, as decided, rather than leave them pending until max_age holds them again.
            await self._settle_undeliverable(message_id, envelope, classification,
                                             [Planned(self._journal_decision(r, classification), None)
                                              for r in unsettled], State.ACTIVE)
            state = fold(envelope.recipients, self.spool.journal(message_id, State.ACTIVE))
        redo = [r.address for r in state.pending() if r.action in (Action.DEFER.value, None)]
        if redo:
            # Facts were unknown last time (or the decision was lost in a crash): decide again.
            decided = await self.pipeline.decide(envelope, classification, redo)
            async with self._pipeline_slot():
                planned = await self.pipeline.protect(folder, decided)
            await self._io(self.spool.append_many, message_id, State.ACTIVE,
                           [self._decided_record(p) for p in planned])
            for p in planned:
                await self._emit(self._decided_event(message_id, p))
            await self._settle_undeliverable(message_id, envelope, classification, planned, State.ACTIVE)
            state = fold(envelope.recipients, self.spool.journal(message_id, State.ACTIVE))
        sendable = [r for r in state.pending() if r.action == Action.SEND.value and r.payload]
        groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for r in sendable:
            domain = r.address.rpartition("@")[2].lower()
            groups[(domain, r.protection or Protection.TLS_OPPORTUNISTIC.value, r.payload or "message")].append(
                r.address)
        mx_cache: dict[str, MxAnswer] = {}
        results = await asyncio.gather(*(
            self._deliver_group(envelope, folder, key, rcpts, mx_cache) for key, rcpts in groups.items()))
        records: list[dict[str, Any]] = []
        for group_results in results:
            records.extend(self._status_record(result) for result in group_results)
        if records:
            await self._io(self.spool.append_many, message_id, State.ACTIVE, records)
        for key, group_results in zip(groups, results, strict=True):
            for result in group_results:
                await self._record_result(message_id, envelope, key[1], result)
        await self._conclude(message_id, envelope, classification)

    @staticmethod
    def _journal_decision(r: RecipientState, classification: Classification) -> Decision:
        return Decision(r.address, Level(r.level or classification.level.value), Action(r.action or "quarantine"), None,
                        r.rule or "resumed", (Step(None, False, r.reason),))

    async def _resolve_mx(self, domain: str) -> MxAnswer:
        answer = await resolve_mx(self.resolver, domain)
        self.mx_memo.put(answer)
        return answer

    async def _deliver_group(self, envelope: Envelope, folder: Path, key: tuple[str, str, str],
                             rcpts: list[str], mx_cache: dict[str, MxAnswer]) -> list[RecipientResult]:
        domain, protection, payload = key
        # RFC 8461 §5: the domain's MTA-STS policy binds every delivery, not only tls-verified
        # (delivery_mx_policy never raises: a failure is an unknown, and protected mail waits)
        mx_policy = await self.pipeline.gatherer.delivery_mx_policy(domain, Protection(protection))
        if not mx_policy.known:
            return [RecipientResult(r, Outcome.DEFERRED, f"451 4.4.3 {mx_policy.reason}") for r in rcpts]
        job = DeliveryJob(domain=domain, sender=envelope.sender, recipients=tuple(rcpts),
                          payload=folder / payload, protection=Protection(protection),
                          smtputf8=envelope.smtputf8, body_8bit=envelope.body_8bit,
                          mx_allowed=mx_policy.mx_allowed, mta_sts_enforce=mx_policy.enforce)
        # Domain slot first: a burst to one slow domain then waits on its own limit
        # without holding global slots that every other domain needs.
        async with self.domain_slots[domain], self.global_slots:
            try:
                if domain not in mx_cache:
                    mx_cache[domain] = self.mx_memo.get(domain.lower()) or await self._resolve_mx(domain)
                return await self.deliverer.deliver(job, mx_cache[domain])
            except Exception as exc:  # a bug must not lose mail nor escape max_age: defer with the reason
                eventlog.error("delivery-failed", id=envelope.id, domain=domain, error=repr(exc), exc_info=True)
                return [RecipientResult(r, Outcome.DEFERRED, f"451 4.3.0 internal error: {exc!r}") for r in rcpts]

    @staticmethod
    def _status_record(result: RecipientResult) -> dict[str, Any]:
        status = {Outcome.DELIVERED: RecipientStatus.DELIVERED, Outcome.BOUNCED: RecipientStatus.BOUNCED,
                  Outcome.DEFERRED: RecipientStatus.DEFERRED}[result.outcome]
        tls = None
        if result.tls is not None:
            tls = {"mx": result.tls.mx, "version": result.tls.version, "cipher": result.tls.cipher,
                   "verified": result.tls.verified, "verification": result.tls.verification}
        return {"e": "status", "rcpt": result.address, "status": status.value, "response": result.response,
                "tls": tls, "at": time.time()}

    async def _record_result(self, message_id: str, envelope: Envelope, protection: str,
                             result: RecipientResult) -> None:
        status = RecipientStatus(self._status_record(result)["status"])
        if status is RecipientStatus.DELIVERED:
            self.metrics.delivered.labels(protection).inc()
            self.metrics.latency.observe(time.time() - envelope.received_at)
        elif status is RecipientStatus.BOUNCED:
            self.metrics.bounced.inc()
        else:
            self.metrics.deferred.inc()
        eventlog.event(status.value, id=message_id, recipient=result.address, protection=protection,
                       response=result.response, tls=result.tls.version if result.tls else None)
        await self._emit(RecipientUpdated(message_id, time.time(), result.address, status, result.response,
                                          result.tls))

    async def _conclude(self, message_id: str, envelope: Envelope, classification: Classification) -> None:
        state = fold(envelope.recipients, self.spool.journal(message_id, State.ACTIVE))
        now = time.time()
        pending = state.pending()
        if pending and now - envelope.received_at >= self.cfg.delivery.max_age:
            await self._expire(message_id, envelope, classification, state)
            state = fold(envelope.recipients, self.spool.journal(message_id, State.ACTIVE))
            pending = state.pending()
        # Bounce permanently failed recipients now, not when the last deferred one settles.
        await self._bounce(message_id, envelope, state)
        if pending:
            retry = self.cfg.delivery.retry
            delay = retry[min(state.attempts, len(retry) - 1)]
            due = min(now + delay, envelope.received_at + self.cfg.delivery.max_age)
            await self._io(self.spool.append_many, message_id, State.ACTIVE,
                           [{"e": "attempt", "at": now, "next": due}])
            await self._io(self.spool.move, message_id, State.ACTIVE, State.DEFERRED)
            self._schedule(message_id, due)
            return
        await self._io(self.spool.finish, message_id, State.ACTIVE)
        eventlog.event("done", id=message_id)

    async def _expire(self, message_id: str, envelope: Envelope, classification: Classification,
                      state: MessageState) -> None:
        """max_age reached: protected mail is quarantined (never sent weaker), public mail bounces."""
        pending = state.pending()
        protected = [r for r in pending if Level(r.level or classification.level.value).protected]
        public = [r for r in pending if r not in protected]
        if protected:
            decisions = [Decision(r.address, Level(r.level or classification.level.value), Action.QUARANTINE, None,
                                  "max_age", (Step(None, False, f"not delivered within max_age: {r.response}"),))
                         for r in protected]
            await self._hold(message_id, envelope, classification, decisions, State.ACTIVE)
        if public:
            records = [{"e": "status", "rcpt": r.address, "status": RecipientStatus.BOUNCED.value,
                        "response": f"{r.response or '451 4.4.7'} (gave up after max_age: 5.4.7)", "at": time.time()}
                       for r in public]
            await self._io(self.spool.append_many, message_id, State.ACTIVE, records)
            for record in records:
                self.metrics.bounced.inc()
                await self._emit(RecipientUpdated(message_id, time.time(), str(record["rcpt"]),
                                                  RecipientStatus.BOUNCED, str(record["response"])))

    async def _bounce(self, message_id: str, envelope: Envelope, state: MessageState) -> None:
        bounced = [r for r in state.recipients.values()
                   if r.status is RecipientStatus.BOUNCED and f"dsn:{r.address}" not in state.notified]
        if not bounced:
            return
        if not envelope.sender or envelope.kind in (Kind.BOUNCE, Kind.NOTICE):
            eventlog.warning("bounce-not-returned", id=message_id, reason="null sender or gateway-made message",
                             recipients=[r.address for r in bounced])
            return
        folder = self.spool.dir(State.ACTIVE, message_id)
        data = await self._io(header_bytes, folder / "message")  # a DSN returns headers only
        dsn = build_dsn(original_id=message_id, sender=envelope.sender,
                        failed=[FailedRecipient(r.address, r.response) for r in bounced],
                        original_headers=header_block(data), reporting_mta=self.cfg.server.hostname,
                        from_address=self._bounce_sender(), arrival=envelope.received_at)
        dsn_id = await self._io(partial(self.spool.submit, "", [envelope.sender], dsn, kind=Kind.BOUNCE,
                                        origin=message_id))
        await self._io(self.spool.append_many, message_id, State.ACTIVE,
                       [{"e": "notified", "what": f"dsn:{r.address}", "id": dsn_id} for r in bounced])
        self.ready.put_nowait(dsn_id)
        eventlog.event("bounce-sent", id=message_id, dsn=dsn_id, recipients=len(bounced))

