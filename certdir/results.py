"""What a lookup answers: found / not found / unknown, the chosen certificate and
every rejected candidate with its reason."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa


class CertdirError(Exception):
    """A source could not answer (directory down, timeout, bad reply, unreadable file).

    Never means "no certificate": the directory turns it into an UNKNOWN result.
    """


class LookupStatus(enum.StrEnum):
    FOUND = "found"  # a usable certificate was chosen
    NOT_FOUND = "not-found"  # every source answered; none had a usable certificate
    # Some source could not answer, or a candidate could not be judged (its CRL/OCSP
    # or issuer out of reach): fail closed, never "no certificate".
    UNKNOWN = "unknown"


class RejectionCode(enum.StrEnum):
    """Why a candidate certificate may not be encrypted to."""

    MALFORMED = "malformed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    UNTRUSTED = "untrusted"
    REVOKED = "revoked"
    REVOCATION_UNKNOWN = "revocation-unknown"
    KEY_USAGE = "key-usage"
    EXTENDED_KEY_USAGE = "extended-key-usage"
    ADDRESS_MISMATCH = "address-mismatch"
    UNSUPPORTED_KEY = "unsupported-key"
    NOT_CHOSEN = "not-chosen"  # usable, but another certificate was preferred


@dataclass(frozen=True)
class CandidateCert:
    certificate: x509.Certificate
    subject: str
    issuer: str
    serial: str  # hex
    sha256: str  # hex fingerprint of the DER
    source: str  # "ldap:<name>", "local:address", "local:domain"
    not_before: dt.datetime
    not_after: dt.datetime
    key: str  # e.g. "RSA-3072", "EC-secp256r1"
    entry: str = ""  # the LDAP entry DN or the local file it came from
    revocation: str = ""  # how revocation was established, e.g. "not revoked (OCSP http://...)"

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, source: str, entry: str = "") -> CandidateCert:
        return cls(
            certificate=cert,
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            serial=format(cert.serial_number, "x"),
            sha256=cert.fingerprint(hashes.SHA256()).hex(),
            source=source,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            key=describe_key(cert),
            entry=entry,
        )


def describe_key(cert: x509.Certificate) -> str:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unsupported"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC-{key.curve.name}"
    return type(key).__name__.removeprefix("_").replace("PublicKey", "")


@dataclass(frozen=True)
class Rejection:
    """A candidate that was found and may not be used, and why."""

    source: str
    code: RejectionCode
    reason: str  # one line, e.g. "expired on 2025-03-01"
    candidate: CandidateCert | None = None  # None when the bytes were not a certificate
    entry: str = ""
    # A reason that may go away by itself (CRL server down, CA entry unreadable): a
    # result with such a rejection is never cached, and is UNKNOWN unless another
    # certificate was usable.
    transient: bool = False


@dataclass(frozen=True)
class LookupResult:
    address: str
    status: LookupStatus
    reason: str  # one line a sender/officer can read
    chosen: CandidateCert | None = None
    rejected: tuple[Rejection, ...] = ()
    cached: bool = False  # answered from the cache
    errors: tuple[str, ...] = ()  # sources that could not answer, with why
