"""Per message: classify -> decide -> protect. Enqueueing is the queue's job.

Each stage takes plain values and returns plain values; the queue writes what
they return into the message's journal before anything leaves.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
from dataclasses import dataclass, replace
from email.utils import getaddresses
from functools import partial
from pathlib import Path
from typing import Any

from gateway import eventlog
from gateway.config import Config
from gateway.facts import FactGatherer, GatheredFacts
from gateway.spool import Envelope, Kind
from policy.classify import classify_message, unscanned_message
from policy.decide import decide_recipient
from policy.model import (
    Action,
    CertificateFacts,
    CertificateRef,
    Classification,
    Decision,
    FactStatus,
    Level,
    Protection,
    RecipientFacts,
    Step,
    TlsFacts,
)
from policy.policyfile import Policy


class PolicyHolder:
    """The policy in force; SIGHUP swaps it only when the new file is valid."""

    def __init__(self, policy: Policy) -> None:
        self.current = policy


@dataclass(frozen=True)
class Decided:
    decision: Decision
    gathered: GatheredFacts | None = None


@dataclass(frozen=True)
class Planned:
    """A recipient's decision plus the file in the message folder that will be sent."""

    decision: Decision
    payload: str | None  # "message" or "smime-N.eml"; None unless action is SEND
    certificate: CertificateRef | None = None  # for the audit, when S/MIME
    cipher: str | None = None
    mx_allowed: Any | None = None
    smime: dict[str, Any] | None = None  # for the audit: signing, header protection, organisation


def read_headers(data: bytes) -> email.message.Message:
    end = data.find(b"\r\n\r\n")
    block = data if end < 0 else data[: end + 4]
    return email.message_from_bytes(block, policy=email.policy.compat32)


_HEADER_END = re.compile(rb"\r?\n\r?\n")
_HEADER_CHUNK = 64 * 1024
MAX_HEADER_BLOCK = 16 << 20  # as gateway.smime: a header section beyond this is not parsed further


def header_bytes(path: Path) -> bytes:
    """The header section of the message in `path`, up to and with the empty line, reading
    only as far as that line (a 50 MB message costs one small read, not 50 MB of memory)."""
    buf = b""
    with path.open("rb") as f:
        for _ in range(MAX_HEADER_BLOCK // _HEADER_CHUNK + 1):
            chunk = f.read(_HEADER_CHUNK)
            buf += chunk
            if buf.startswith((b"\r\n", b"\n")):  # no header fields at all
                return b""
            match = _HEADER_END.search(buf, max(0, len(buf) - len(chunk) - 3))
            if match:
                return buf[: match.end()]
            if not chunk:
                break
    return buf


def read_header_block(path: Path) -> email.message.Message:
    """The header fields of the message in `path` (see header_bytes)."""
    return email.message_from_bytes(header_bytes(path), policy=email.policy.compat32)


ABANDON_GRACE = 30.0  # seconds for an abandoned encryption to stop (it checks once per chunk)
_PAYLOAD_NAME = re.compile(r"smime-(\d+)\.eml")


def next_payload_number(folder: Path) -> int:
    """1 + the highest smime-N.eml already in the folder.

    A retry encrypts deferred recipients again while earlier payloads may still be
    waiting for delivery to others; reusing a name would replace their CMS."""
    numbers = [int(m.group(1)) for name in (p.name for p in folder.iterdir())
               if (m := _PAYLOAD_NAME.fullmatch(name.lstrip(".").removesuffix(".tmp")))]
    return max(numbers, default=0) + 1


def visible_recipients(headers: email.message.Message) -> set[str]:
    """Addresses named in To/Cc (and their Resent- forms); the rest were Bcc."""
    fields: list[str] = []
    for name in ("To", "Cc", "Resent-To", "Resent-Cc"):
        fields.extend(str(v) for v in headers.get_all(name, []))
    return {address.lower() for _, address in getaddresses(fields) if address}


_PUBLIC = Classification(Level.PUBLIC, scanned=False)


class Pipeline:
    def __init__(self, cfg: Config, policy: PolicyHolder, gatherer: FactGatherer) -> None:
        self.cfg = cfg
        self.policy = policy
        self.gatherer = gatherer
        self._smime: Any | None = None

    def _smime_options(self) -> Any:
        """Loaded once (organisation and signer files are read from disk)."""
        if self._smime is None:
            from gateway.smime import SmimeOptions

            self._smime = SmimeOptions.from_config(self.cfg.smime)
        return self._smime

    # -- classify ----------------------------------------------------------------------

    async def classify(self, envelope: Envelope, data: bytes) -> Classification:
        if envelope.kind in (Kind.BOUNCE, Kind.NOTICE):
            return _PUBLIC  # made by the gateway itself, about the sender's own message
        # CPU-bound (attachment text extraction): off the event loop. classify_message
        # never raises; what it cannot read is recorded as unscannable with the reason.
        policy = self.policy.current
        timeout = policy.limits.max_seconds
        try:
            return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                None, classify_message, data, policy), timeout)
        except TimeoutError:
            # Fail closed at once rather than defer: a retry would spend the same
            # time on the same bytes again. Unscannable content counts as the
            # policy's unscannable level (confidential by default), so the message
            # leaves encrypted or is held, never weaker. The worker thread cannot
            # be stopped; it finishes on its own, its result unused.
            eventlog.warning("classify-timeout", id=envelope.id, seconds=timeout)
            return unscanned_message(data, policy, f"message: budget spent: not classified "
                                                   f"within {timeout:g} s")

    # -- decide ------------------------------------------------------------------------

    async def decide(self, envelope: Envelope, classification: Classification,
                     recipients: list[str]) -> list[Decided]:
        return list(await asyncio.gather(*(self._decide_one(envelope, classification, r) for r in recipients)))

    async def _decide_one(self, envelope: Envelope, classification: Classification, rcpt: str) -> Decided:
        if envelope.kind in (Kind.BOUNCE, Kind.NOTICE):
            step = Step(Protection.TLS_OPPORTUNISTIC, True, f"{envelope.kind} from the gateway to the sender")
            return Decided(Decision(rcpt, Level.PUBLIC, Action.SEND, Protection.TLS_OPPORTUNISTIC,
                                    f"kind:{envelope.kind}", (step,)))
        if envelope.kind is Kind.RELEASE and envelope.override_protection:
            return await self._released(envelope, classification, rcpt)
        choice = self.policy.current.choice_for(classification, envelope.sender, rcpt)
        gathered = await self.gatherer.gather_full(rcpt, choice)
        decision = decide_recipient(replace(classification, level=choice.level), choice.protections,
                                    choice.fallback, choice.rule, gathered.facts)
        return Decided(decision, gathered)

    async def _released(self, envelope: Envelope, classification: Classification, rcpt: str) -> Decided:
        """An administrator released a held message with a chosen protection (audited by them)."""
        if envelope.override_protection is None:  # a release always names its protection (quarantine.release)
            raise ValueError(f"released message {envelope.id} names no protection")
        protection = Protection(envelope.override_protection)
        rule = f"release:{envelope.origin}"
        if protection is Protection.SMIME:
            cert, certificate = await self.gatherer.certificate(rcpt)
            facts = RecipientFacts(rcpt, cert, TlsFacts(FactStatus.NO, "not needed for S/MIME"))
            step = Step(protection, cert.status is FactStatus.YES, f"released with S/MIME: {cert.reason}")
            if cert.status is not FactStatus.YES:
                action = Action.DEFER if cert.status is FactStatus.UNKNOWN else Action.QUARANTINE
                return Decided(Decision(rcpt, classification.level, action, None, rule, (step,)),
                               GatheredFacts(facts))
            return Decided(Decision(rcpt, classification.level, Action.SEND, protection, rule, (step,)),
                           GatheredFacts(facts, certificate))
        step = Step(protection, True, f"released by an administrator with {protection}; enforced at delivery")
        facts = RecipientFacts(rcpt, CertificateFacts(FactStatus.NO, "not asked"),
                               TlsFacts(FactStatus.NO, "not asked"))
        return Decided(Decision(rcpt, classification.level, Action.SEND, protection, rule, (step,)),
                       GatheredFacts(facts))

    # -- protect -----------------------------------------------------------------------

    async def protect(self, folder: Path, decided: list[Decided]) -> list[Planned]:
        """S/MIME recipients get encrypted payloads; everyone else gets the message as is.

        Recipients named in To/Cc share one encryption; each Bcc recipient gets their
        own, since the RecipientInfos would otherwise reveal who else received it.
        """
        planned: list[Planned] = []
        smime: list[Decided] = []
        for item in decided:
            d = item.decision
            if d.action is Action.SEND and d.protection is Protection.SMIME:
                smime.append(item)
            elif d.action is Action.SEND:
                planned.append(Planned(d, "message", mx_allowed=item.gathered.mx_allowed if item.gathered else None))
            else:
                planned.append(Planned(d, None))
        if not smime:
            return planned
        message_path = folder / "message"
        headers = await asyncio.get_running_loop().run_in_executor(None, read_header_block, message_path)
        first = await asyncio.get_running_loop().run_in_executor(None, next_payload_number, folder)
        visible = visible_recipients(headers)
        groups: list[list[Decided]] = []
        shared = [i for i in smime if i.decision.recipient.lower() in visible]
        if shared:
            groups.append(shared)
        groups.extend([i] for i in smime if i.decision.recipient.lower() not in visible)
        for number, group in enumerate(groups, start=first):
            planned.extend(await self._encrypt_group(folder, message_path, number, group))
        return planned

    def encryption_timeout(self, size: int) -> float:
        """Seconds to wait for one encryption of a `size`-octet message ([smime] timeout)."""
        return self.cfg.smime.timeout + self.cfg.smime.timeout_per_mb * size / (1 << 20)

    async def _encrypt_group(self, folder: Path, source: Path, number: int,
                             group: list[Decided]) -> list[Planned]:
        from gateway.smime import encrypt_file_durably

        name = f"smime-{number}.eml"
        certificates = [i.gathered.certificate for i in group
                        if i.gathered is not None and i.gathered.certificate is not None]
        if len(certificates) != len(group):
            # an S/MIME decision always carries its certificate (decide: smime only when found)
            raise ValueError(f"S/MIME group {number} has a recipient without a certificate")
        abort = threading.Event()
        try:
            loop = asyncio.get_running_loop()
            timeout = self.encryption_timeout(await loop.run_in_executor(None, lambda: source.stat().st_size))
            job = loop.run_in_executor(
                None, partial(encrypt_file_durably, source, folder / name, certificates, self._smime_options(),
                              abort))
            done, _ = await asyncio.wait({job}, timeout=timeout)
            if not done:
                abort.set()
                # An executor thread cannot be cancelled: let it reach its next chunk and
                # remove its temporary file before the folder is moved on (a path it
                # unlinks after a move would leave the file behind).
                job.add_done_callback(lambda f: f.cancelled() or f.exception())
                await asyncio.wait({job}, timeout=ABANDON_GRACE)
                raise TimeoutError(f"no result within {timeout:g}s ([smime] timeout)")
            result = job.result()
        except Exception as exc:  # fail closed: an encryption that did not happen defers, never downgrades
            eventlog.error("smime-failed", id=folder.name, folder=str(folder), error=repr(exc))
            return [
                Planned(replace(i.decision, action=Action.DEFER, protection=None,
                                steps=i.decision.steps + (Step(Protection.SMIME, None, f"encryption failed: {exc}"),)),
                        None)
                for i in group
            ]
        finally:
            abort.set()  # a thread still running after a timeout stops at its next chunk
        cipher = result.algorithms
        audit = result.audit()
        return [Planned(i.decision, name, i.gathered.facts.certificate.certificate if i.gathered else None, cipher,
                        smime=audit)
                for i in group]
