"""The facts and outcomes the policy speaks in.

Plain frozen values, so `explain`, the pipeline and the tests can build them by
hand. `certdir/` and `tlsprobe/` have result types of their own; the pipeline
turns those into `CertificateFacts` and `TlsFacts` before asking the policy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Level(enum.StrEnum):
    """How much protection the content of a message needs (Datatilsynet's terms)."""

    PUBLIC = "public"
    CONFIDENTIAL = "confidential"  # fortrolig: CPR, finances, purely private matters
    SENSITIVE = "sensitive"  # følsom: GDPR art. 9 and art. 10

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]

    def raised_to(self, other: Level) -> Level:
        """The higher of the two levels: classification only ever goes up."""
        return other if other.rank > self.rank else self

    @property
    def protected(self) -> bool:
        """Confidential and sensitive mail: never in clear, unknowns fail closed."""
        return self is not Level.PUBLIC


_LEVEL_RANK = {Level.PUBLIC: 0, Level.CONFIDENTIAL: 1, Level.SENSITIVE: 2}


class Protection(enum.StrEnum):
    """How a message may leave for one recipient, strongest first."""

    SMIME = "smime"
    TLS_VERIFIED = "tls-verified"
    TLS_ENFORCED = "tls-enforced"
    TLS_OPPORTUNISTIC = "tls-opportunistic"

    @property
    def requires_tls(self) -> bool:
        """Delivery must refuse to send without TLS for these."""
        return self in (Protection.TLS_VERIFIED, Protection.TLS_ENFORCED)


class Fallback(enum.StrEnum):
    """What happens when no acceptable protection is possible."""

    QUARANTINE = "quarantine"
    BLOCK = "block"
    DELIVER = "deliver"  # only allowed for public mail: opportunistic delivery


class Action(enum.StrEnum):
    """The outcome of a decision for one recipient."""

    SEND = "send"  # with `Decision.protection`
    QUARANTINE = "quarantine"
    BLOCK = "block"
    DEFER = "defer"  # a fact was unknown; try again later, never weaker


@dataclass(frozen=True)
class Evidence:
    """Why a message has its level. Samples are masked, never the value in clear."""

    detector: str  # e.g. "cpr", "art9.health", "marking.subject"
    level: Level
    count: int
    samples: tuple[str, ...] = ()  # masked, e.g. "010190-xxxx"
    where: tuple[str, ...] = ()  # "body", "attachment:journal.pdf", "subject"
    # How many different values were found (CPR: different full numbers, counted on
    # one-way hashes and never kept), for the breach log's "number of data subjects"
    # (art. 33(3)(a)); the samples stop at a handful. 0: not counted.
    distinct: int = 0


@dataclass(frozen=True)
class Classification:
    level: Level
    evidence: tuple[Evidence, ...] = ()
    marking: str | None = None  # the sender's own marking, e.g. "[fortrolig]"
    scanned: bool = True  # False: content was not inspected (markings only)
    unscannable: tuple[str, ...] = ()  # parts that could not be read, with the reason


class FactStatus(enum.StrEnum):
    YES = "yes"  # a usable certificate / the grade below was measured
    NO = "no"  # definitely not available (an answer, not an error)
    UNKNOWN = "unknown"  # lookup failed, timed out, not asked (offline)


@dataclass(frozen=True)
class CertificateRef:
    """The certificate a recipient's message is encrypted to, for the audit."""

    subject: str
    issuer: str
    serial: str  # hex
    sha256: str  # hex fingerprint of the DER
    source: str  # e.g. "ldap:oces", "local:address", "local:domain"


@dataclass(frozen=True)
class CertificateFacts:
    status: FactStatus
    reason: str
    certificate: CertificateRef | None = None


class TlsGrade(enum.StrEnum):
    NONE = "none"  # no STARTTLS, or only below the minimum version
    UNVERIFIED = "tls-unverified"  # encrypts, certificate not valid for the MX name
    VERIFIED = "tls-verified"  # PKIX chain and MX name valid (or MTA-STS enforce)


@dataclass(frozen=True)
class TlsFacts:
    status: FactStatus  # UNKNOWN when the probe could not finish (DNS SERVFAIL, timeout)
    reason: str
    grade: TlsGrade | None = None  # set when status is YES


@dataclass(frozen=True)
class RecipientFacts:
    address: str
    certificate: CertificateFacts
    tls: TlsFacts


@dataclass(frozen=True)
class Step:
    """One line of a decision chain: what was considered and why it was (not) taken."""

    protection: Protection | None
    possible: bool | None  # None: unknown
    reason: str


@dataclass(frozen=True)
class Decision:
    recipient: str
    level: Level
    action: Action
    protection: Protection | None  # set when action is SEND
    rule: str  # which policy rule chose the protections, e.g. "level:sensitive"
    steps: tuple[Step, ...] = field(default=())

    @property
    def reason(self) -> str:
        """One line a sender or officer can read."""
        return "; ".join(step.reason for step in self.steps)
