"""May we encrypt to this certificate for this address? Everything but revocation.

Path building and signature checks (PKCS#1 v1.5 and RSASSA-PSS) are
cryptography's `x509.verification` (RFC 5280 path validation). Its client
verifier is built for TLS client certificates, so the end-entity extension
policy is replaced: S/MIME recipients need keyUsage for (RSA) key transport
and an e-mail EKU (or none), which are checked here with readable reasons.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certdir.certfiles import certificates_from_bytes
from certdir.results import CertdirError, RejectionCode

_MIN_RSA_BITS = 2048
# gateway/cms.py builds KeyTransRecipientInfo (RSA) only. An EC certificate needs
# KeyAgreeRecipientInfo (ECDH, RFC 5753); choosing one would only fail at encryption.
EC_UNSUPPORTED = "EC key agreement (ECDH) is not supported for S/MIME encryption yet"


@dataclass(frozen=True)
class Problem:
    code: RejectionCode
    reason: str


def _day(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def split_address(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return local, domain


def same_address(a: str, b: str) -> bool:
    """Local parts compare exactly (RFC 5321 section 2.4), domains without case."""
    la, da = split_address(a.strip())
    lb, db = split_address(b.strip())
    return bool(la) and la == lb and da.lower().rstrip(".") == db.lower().rstrip(".")


def certificate_addresses(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(SAN rfc822Names, subject emailAddress values)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        rfc822 = [str(v) for v in san.get_values_for_type(x509.RFC822Name)]
    except x509.ExtensionNotFound:
        rfc822 = []
    subject = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    return rfc822, subject


def address_problem(cert: x509.Certificate, address: str, entry_mail: Sequence[str]) -> Problem | None:
    """RFC 8550 section 3: SAN rfc822Name first; else subject emailAddress; else (an
    OCES2 habit) the directory entry that published the certificate."""
    rfc822, subject = certificate_addresses(cert)
    if rfc822:
        if any(same_address(address, a) for a in rfc822):
            return None
        return Problem(RejectionCode.ADDRESS_MISMATCH, f"issued for {', '.join(rfc822)}, not {address}")
    if subject:
        if any(same_address(address, a) for a in subject):
            return None
        return Problem(RejectionCode.ADDRESS_MISMATCH, f"issued for {', '.join(subject)}, not {address}")
    if any(same_address(address, a) for a in entry_mail):
        return None
    return Problem(RejectionCode.ADDRESS_MISMATCH, f"names no e-mail address and its entry is not for {address}")


def domain_problem(cert: x509.Certificate, domain: str) -> Problem | None:
    """A domain certificate (function mailbox between authorities) names an address
    in the domain, or the domain itself as a dNSName."""
    rfc822, subject = certificate_addresses(cert)
    domains = {split_address(a)[1].lower().rstrip(".") for a in rfc822 + subject}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        domains.update(str(d).lower().rstrip(".") for d in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    if domain.lower().rstrip(".") in domains:
        return None
    named = ", ".join(sorted(d for d in domains if d)) or "no domain"
    return Problem(RejectionCode.ADDRESS_MISMATCH, f"issued for {named}, not the domain {domain}")


def usage_problem(cert: x509.Certificate, now: dt.datetime) -> Problem | None:
    """Validity period, key type and size, keyUsage and extendedKeyUsage."""
    if now < cert.not_valid_before_utc:
        return Problem(RejectionCode.NOT_YET_VALID, f"not valid before {_day(cert.not_valid_before_utc)}")
    if now > cert.not_valid_after_utc:
        return Problem(RejectionCode.EXPIRED, f"expired on {_day(cert.not_valid_after_utc)}")
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return Problem(RejectionCode.UNSUPPORTED_KEY, "public key of an unsupported type")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            return Problem(RejectionCode.UNSUPPORTED_KEY, f"RSA key of {key.key_size} bits is too weak")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        return Problem(RejectionCode.UNSUPPORTED_KEY, f"{EC_UNSUPPORTED} ({key.curve.name} key)")
    else:
        return Problem(RejectionCode.UNSUPPORTED_KEY,
                       f"{type(key).__name__.lstrip('_')} keys cannot receive encrypted mail")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None  # RFC 5280 4.2.1.3: absent means not restricted
    except ValueError as exc:
        return Problem(RejectionCode.MALFORMED, f"unreadable extension: {exc}")
    if ku is not None and not ku.key_encipherment:
        return Problem(RejectionCode.KEY_USAGE, "keyUsage does not permit keyEncipherment (encryption)")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and not ({ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
                                & set(eku)):
        names = ", ".join(getattr(o, "_name", o.dotted_string) for o in eku)
        return Problem(RejectionCode.EXTENDED_KEY_USAGE, f"extendedKeyUsage ({names}) excludes emailProtection")
    return None


def _ca_constraints(policy: verification.Policy, cert: x509.Certificate, bc: x509.BasicConstraints | None) -> None:
    if bc is None or not bc.ca:
        raise ValueError("issuer is not a CA (basicConstraints)")


def _ca_key_usage(policy: verification.Policy, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("issuer keyUsage lacks keyCertSign")


class TrustStore:
    """The configured trust anchors, and intermediates known so far."""

    def __init__(self, anchors: Sequence[x509.Certificate], intermediates: Iterable[x509.Certificate] = ()) -> None:
        if not anchors:
            self._store: verification.Store | None = None
        else:
            self._store = verification.Store(list(anchors))
        self.anchors = tuple(anchors)
        self._intermediates: dict[bytes, x509.Certificate] = {}
        for cert in intermediates:
            self.add_intermediate(cert)
        # The CA side keeps RFC 5280's structural rules but not the Web PKI's extra
        # demands (AKI everywhere, criticality), which older OCES CAs predate.
        self._ca_policy = (
            verification.ExtensionPolicy.permit_all()
            .require_present(x509.BasicConstraints, verification.Criticality.AGNOSTIC, _ca_constraints)
            .may_be_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, _ca_key_usage)
        )
        self._ee_policy = verification.ExtensionPolicy.permit_all()

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> TrustStore:
        anchors: list[x509.Certificate] = []
        intermediates: list[x509.Certificate] = []
        for path in paths:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise CertdirError(f"trust anchors {path}: {exc.strerror}")
            for cert in certificates_from_bytes(data, name=str(path)):
                (anchors if cert.subject == cert.issuer else intermediates).append(cert)
        return cls(anchors, intermediates)

    def add_intermediate(self, cert: x509.Certificate) -> None:
        self._intermediates[cert.fingerprint(hashes.SHA256())] = cert

    def knows_issuer_of(self, cert: x509.Certificate) -> bool:
        return any(c.subject == cert.issuer for c in (*self.anchors, *self._intermediates.values()))

    def chain(self, cert: x509.Certificate, now: dt.datetime,
              extra: Sequence[x509.Certificate] = ()) -> list[x509.Certificate] | Problem:
        """The validated chain, leaf first, or why there is none."""
        if self._store is None:
            return Problem(RejectionCode.UNTRUSTED, "no trust anchors are configured")
        verifier = (
            verification.PolicyBuilder().store(self._store).time(now)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(cert, [*self._intermediates.values(), *extra])
        except verification.VerificationError as exc:
            return Problem(RejectionCode.UNTRUSTED, _chain_reason(cert, str(exc)))
        return list(verified.chain)


def _chain_reason(cert: x509.Certificate, message: str) -> str:
    issuer = cert.issuer.rfc4514_string()
    if "candidates exhausted" in message and "no interior errors" in message:
        return f"does not chain to a trusted root (issuer {issuer})"
    # cryptography's message ends with "(encountered processing <Certificate(...)>)".
    text = message.removeprefix("validation failed: ").split(" (encountered processing")[0]
    return f"chain to a trusted root failed: {text} (issuer {issuer})"

