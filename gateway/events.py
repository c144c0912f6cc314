"""What happens to a message, as plain values: the seam between the relay and the audit.

The pipeline and the delivery emit these; an `AuditSink` stores them (the audit
store keeps one record per message, updated by appended events). They never hold
the body, an attachment or a detected identifier in clear.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from policy.model import (
    Action,
    CertificateRef,
    Classification,
    Decision,
    Evidence,
    Level,
    Protection,
    Step,
)


class RecipientStatus(enum.StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    QUARANTINED = "quarantined"
    BLOCKED = "blocked"

    @property
    def final(self) -> bool:
        return self not in (RecipientStatus.QUEUED, RecipientStatus.DEFERRED)


@dataclass(frozen=True)
class TlsSession:
    """What a delivery actually negotiated, per connection."""

    mx: str
    version: str | None  # None: sent without TLS (only ever for opportunistic)
    cipher: str | None
    verified: bool
    # How `verified` was established, so the audit never reads "false" as "found invalid"
    # when the certificate was simply not checked (tls-enforced encrypts without checking).
    verification: str = ""


@dataclass(frozen=True)
class MessageAccepted:
    id: str
    received_at: float
    message_id: str | None
    sender: str
    size: int
    recipients: tuple[str, ...]
    client: str  # peer address
    subject: str | None = None  # only filled when [audit] include_subject


@dataclass(frozen=True)
class MessageClassified:
    id: str
    at: float
    classification: Classification


@dataclass(frozen=True)
class RecipientDecided:
    id: str
    at: float
    decision: Decision
    certificate: CertificateRef | None = None  # when S/MIME
    cipher: str | None = None  # e.g. "aes256-cbc/rsa-pkcs1v15" when S/MIME
    smime: dict[str, Any] | None = None  # signing, header protection, organisation recipient


@dataclass(frozen=True)
class RecipientUpdated:
    id: str
    at: float
    address: str
    status: RecipientStatus
    smtp_response: str = ""
    tls: TlsSession | None = None
    quarantine_id: str | None = None


AuditEvent = MessageAccepted | MessageClassified | RecipientDecided | RecipientUpdated


class AuditSink(Protocol):
    """Stores audit events. Called from the event loop; must not block it."""

    async def append(self, event: AuditEvent) -> None: ...

    async def close(self) -> None: ...


# -- the same events as plain JSON values (the audit outbox keeps them on disk) ---------

_EVENT_TYPES: dict[str, type] = {t.__name__: t for t in (MessageAccepted, MessageClassified, RecipientDecided,
                                                          RecipientUpdated)}


def event_to_plain(event: AuditEvent) -> dict[str, Any]:
    from gateway.audit import to_plain

    return {"type": type(event).__name__, "data": to_plain(event)}


def _classification(data: dict[str, Any]) -> Classification:
    evidence = tuple(
        Evidence(e["detector"], Level(e["level"]), int(e["count"]), tuple(e.get("samples", ())),
                 tuple(e.get("where", ())), int(e.get("distinct", 0)))
        for e in data.get("evidence", []))
    return Classification(Level(data["level"]), evidence, data.get("marking"), bool(data.get("scanned", True)),
                          tuple(data.get("unscannable", ())))


def _decision(data: dict[str, Any]) -> Decision:
    steps = tuple(Step(Protection(s["protection"]) if s["protection"] else None, s["possible"], s["reason"])
                  for s in data.get("steps", []))
    return Decision(data["recipient"], Level(data["level"]), Action(data["action"]),
                    Protection(data["protection"]) if data["protection"] else None, data["rule"], steps)


def event_from_plain(plain: dict[str, Any]) -> AuditEvent:
    """The inverse of `event_to_plain`; KeyError/ValueError for anything else."""
    kind, data = plain["type"], dict(plain["data"])
    if kind not in _EVENT_TYPES:
        raise ValueError(f"not an audit event: {kind!r}")
    if kind == "MessageAccepted":
        data["recipients"] = tuple(data["recipients"])
        return MessageAccepted(**data)
    if kind == "MessageClassified":
        return MessageClassified(data["id"], data["at"], _classification(data["classification"]))
    if kind == "RecipientDecided":
        certificate = CertificateRef(**data["certificate"]) if data.get("certificate") else None
        return RecipientDecided(data["id"], data["at"], _decision(data["decision"]), certificate, data.get("cipher"))
    tls = TlsSession(**data["tls"]) if data.get("tls") else None
    return RecipientUpdated(data["id"], data["at"], data["address"], RecipientStatus(data["status"]),
                            data.get("smtp_response", ""), tls, data.get("quarantine_id"))
