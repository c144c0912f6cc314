"""What a probe found out: per-MX details and the domain's TLS grade, as plain values.

These types are tlsprobe's own; the gateway turns a `DomainTls` into the policy's
`TlsFacts` (tlsprobe never imports `policy`, see ARCHITECTURE.md).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any


class ProbeError(Exception):
    """A probe step failed in a way that says nothing about the domain's TLS
    (connection refused, timeout, garbled reply): the MX is unreachable, not "no TLS"."""


class Grade(enum.StrEnum):
    """What the domain's MX hosts can do, weakest first. Values match policy.TlsGrade."""

    NONE = "none"  # no STARTTLS, or no handshake at or above the minimum version
    UNVERIFIED = "tls-unverified"  # encrypts; certificate not valid for the MX name
    VERIFIED = "tls-verified"  # PKIX chain valid and the MX name matches

    @property
    def rank(self) -> int:
        return _GRADE_RANK[self]


_GRADE_RANK = {Grade.NONE: 0, Grade.UNVERIFIED: 1, Grade.VERIFIED: 2}


class DomainStatus(enum.StrEnum):
    GRADED = "graded"  # at least one MX host answered: `grade` is set
    UNKNOWN = "unknown"  # DNS SERVFAIL/timeout or every MX unreachable: temporary, try later
    NO_MX = "no-mx"  # NXDOMAIN, null MX, no address: the domain receives no mail (permanent)


class MtaStsMode(enum.StrEnum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True)
class MtaStsPolicy:
    """An MTA-STS policy (RFC 8461 §3.2) as fetched, or as cached when the fetch failed."""

    mode: MtaStsMode
    mx: tuple[str, ...]  # patterns: "mail.example.dk", "*.example.dk"
    max_age: int  # seconds
    policy_id: str  # the `id=` of the _mta-sts TXT record it was fetched for
    fetched_at: float
    source: str = "fetched"  # "fetched" or "cache" (fetch failed or TXT id unchanged)

    def permits(self, mx_name: str) -> bool:
        """RFC 8461 §4.1: exact name, or "*." standing for exactly one leftmost label."""
        name = mx_name.rstrip(".").lower()
        for pattern in self.mx:
            pattern = pattern.rstrip(".").lower()
            if pattern.startswith("*."):
                head, dot, tail = name.partition(".")
                if dot and head and tail == pattern[2:]:
                    return True
            elif name == pattern:
                return True
        return False


@dataclass(frozen=True)
class MxProbe:
    """One MX address as probed. `grade` None: unreachable, says nothing about TLS."""

    name: str
    address: str
    preference: int
    grade: Grade | None
    reason: str
    banner: str = ""
    starttls: bool | None = None  # None: never got as far as EHLO
    tls_version: str | None = None  # e.g. "TLSv1.3"
    cipher: str | None = None
    cert_verified: bool | None = None  # chain to a trusted CA and name == MX name
    cert_subject: str | None = None
    cert_not_after: str | None = None  # ISO 8601, UTC

    @property
    def reachable(self) -> bool:
        return self.grade is not None


@dataclass(frozen=True)
class DomainTls:
    domain: str
    status: DomainStatus
    grade: Grade | None  # set when status is GRADED
    reason: str
    mx: tuple[MxProbe, ...]
    mta_sts: MtaStsPolicy | None
    probed_at: float
    from_cache: bool = False

    def mx_allowed(self, mx_name: str) -> bool:
        """May mail go to this MX? Only an MTA-STS `enforce` policy narrows the set."""
        if self.mta_sts is None or self.mta_sts.mode is not MtaStsMode.ENFORCE:
            return True
        return self.mta_sts.permits(mx_name)

    @property
    def mta_sts_enforced(self) -> bool:
        """tls-verified "via MTA-STS": the MX names themselves are authenticated by the
        domain's HTTPS policy, not only by (spoofable) DNS."""
        return (
            self.grade is Grade.VERIFIED
            and self.mta_sts is not None
            and self.mta_sts.mode is MtaStsMode.ENFORCE
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mta_sts_enforced"] = self.mta_sts_enforced
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DomainTls:
        policy = data.get("mta_sts")
        return cls(
            domain=data["domain"],
            status=DomainStatus(data["status"]),
            grade=Grade(data["grade"]) if data.get("grade") else None,
            reason=data["reason"],
            mx=tuple(
                MxProbe(**{**m, "grade": Grade(m["grade"]) if m.get("grade") else None})
                for m in data["mx"]
            ),
            mta_sts=policy_from_dict(policy) if policy else None,
            probed_at=float(data["probed_at"]),
            from_cache=bool(data.get("from_cache", False)),
        )


def policy_from_dict(data: dict[str, Any]) -> MtaStsPolicy:
    return MtaStsPolicy(
        mode=MtaStsMode(data["mode"]),
        mx=tuple(data["mx"]),
        max_age=int(data["max_age"]),
        policy_id=str(data["policy_id"]),
        fetched_at=float(data["fetched_at"]),
        source=str(data.get("source", "fetched")),
    )
