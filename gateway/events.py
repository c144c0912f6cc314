"""What happens to a message, as plain values: the seam between the relay and the audit.

The pipeline and the delivery emit these; an `AuditSink` stores them (the audit
store keeps one record per message, updated by appended events). They never hold
the body, an attachment or a detected identifier in clear.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from policy.model import CertificateRef, Classification, Decision


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
