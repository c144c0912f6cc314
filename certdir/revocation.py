"""Is this certificate revoked? OCSP where the certificate names a responder, else
the CRLs of its distribution points: HTTP URLs and (OCES2) LDAP DirNames of
partitioned CRLs. CRLs are cached until their nextUpdate."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    SignatureAlgorithmOID,
)

from certdir.fetch import http_get, http_post
from certdir.ldapsource import LdapSource
from certdir.results import CertdirError

_CRL_ATTRIBUTES = ["certificateRevocationList;binary", "authorityRevocationList;binary"]
_CLOCK_SKEW = dt.timedelta(minutes=5)
# A CRL without nextUpdate is kept this long; one with a far-off nextUpdate too,
# so a newly published CRL is seen within the hour.
_CRL_MAX_AGE = dt.timedelta(hours=1)


class RevocationStatus(enum.StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RevocationResult:
    status: RevocationStatus
    reason: str  # "not revoked (OCSP http://...)", "revoked on ... (CRL ...)", or why unknown


def _name_to_dn(name: x509.Name) -> str:
    return name.rfc4514_string()


def _signature_ok(issuer: x509.Certificate, signature: bytes, data: bytes, oid: x509.ObjectIdentifier,
                  hash_alg: hashes.HashAlgorithm | None) -> bool:
    key = issuer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and hash_alg is not None:
            pad: padding.AsymmetricPadding
            if oid == SignatureAlgorithmOID.RSASSA_PSS:
                pad = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=padding.PSS.AUTO)
            else:
                pad = padding.PKCS1v15()
            key.verify(signature, data, pad, hash_alg)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey) and hash_alg is not None:
            key.verify(signature, data, ec.ECDSA(hash_alg))
            return True
    except InvalidSignature:
        return False
    return False


class RevocationChecker:
    def __init__(self, ldap: Sequence[LdapSource], executor: Executor, timeout: float) -> None:
        self._ldap = list(ldap)
        self._executor = executor
        self._timeout = timeout
        self._crls: dict[str, tuple[x509.CertificateRevocationList, dt.datetime]] = {}

    async def check(self, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime,
                    prefer: LdapSource | None = None) -> RevocationResult:
        problems: list[str] = []
        for url in _ocsp_urls(cert):
            try:
                return await self._ocsp(cert, issuer, url, now)
            except CertdirError as exc:
                problems.append(f"OCSP {exc}")
        points = _distribution_points(cert)
        for kind, where in points:
            try:
                crl = await self._crl(kind, where, issuer, now, prefer)
            except CertdirError as exc:
                problems.append(f"CRL {exc}")
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None:
                return RevocationResult(RevocationStatus.REVOKED,
                                        f"revoked on {entry.revocation_date_utc:%Y-%m-%d} (CRL {where})")
            return RevocationResult(RevocationStatus.GOOD, f"not revoked (CRL {where})")
        if not problems:
            return RevocationResult(RevocationStatus.UNKNOWN,
                                    "revocation status unknown: the certificate names no CRL or OCSP responder")
        return RevocationResult(RevocationStatus.UNKNOWN, "revocation status unknown: " + "; ".join(problems))

    # -- OCSP (RFC 6960) -------------------------------------------------------------

    async def _ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, url: str,
                    now: dt.datetime) -> RevocationResult:
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()  # noqa: S303 - RFC 6960 CertID default
        body = await http_post(url, request.public_bytes(serialization.Encoding.DER),
                               "application/ocsp-request", self._executor, self._timeout)
        try:
            response = ocsp.load_der_ocsp_response(body)
        except ValueError as exc:
            raise CertdirError(f"{url}: unreadable response: {exc}")
        if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise CertdirError(f"{url}: responder says {response.response_status.name.lower()}")
        signer = _ocsp_signer(response, issuer, now)
        if signer is None or not _signature_ok(signer, response.signature, response.tbs_response_bytes,
                                               response.signature_algorithm_oid, response.signature_hash_algorithm):
            raise CertdirError(f"{url}: response not signed by the issuer or its delegated responder")
        for single in response.responses:
            if single.serial_number != cert.serial_number:
                continue
            if single.this_update_utc > now + _CLOCK_SKEW:
                raise CertdirError(f"{url}: response from the future")
            if single.next_update_utc is not None and single.next_update_utc < now - _CLOCK_SKEW:
                raise CertdirError(f"{url}: stale response")
            if single.certificate_status is ocsp.OCSPCertStatus.GOOD:
                return RevocationResult(RevocationStatus.GOOD, f"not revoked (OCSP {url})")
            if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
                when = single.revocation_time_utc
                return RevocationResult(RevocationStatus.REVOKED,
                                        f"revoked on {when:%Y-%m-%d} (OCSP {url})" if when else f"revoked (OCSP {url})")
            raise CertdirError(f"{url}: responder does not know the certificate")
        raise CertdirError(f"{url}: response is about another certificate")

    # -- CRLs (RFC 5280 section 5) ---------------------------------------------------

    async def _crl(self, kind: str, where: str, issuer: x509.Certificate, now: dt.datetime,
                   prefer: LdapSource | None) -> x509.CertificateRevocationList:
        key = f"{kind}:{where}"
        cached = self._crls.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        data = await (self._http_crl(where) if kind == "http" else self._ldap_crl(where, prefer))
        try:
            crl = x509.load_der_x509_crl(data)
        except ValueError:
            try:
                crl = x509.load_pem_x509_crl(data)
            except ValueError as exc:
                raise CertdirError(f"{where}: unreadable CRL: {exc}")
        if crl.issuer != issuer.subject:
            raise CertdirError(f"{where}: CRL issued by {crl.issuer.rfc4514_string()}, not the certificate's issuer")
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise CertdirError(f"{where}: CRL signature does not verify")
        next_update = crl.next_update_utc
        if next_update is not None and next_update < now - _CLOCK_SKEW:
            raise CertdirError(f"{where}: CRL expired at {next_update:%Y-%m-%d %H:%M} (nextUpdate)")
        keep = now + _CRL_MAX_AGE
        if next_update is not None:
            keep = min(keep, next_update)
        self._crls[key] = (crl, keep)
        return crl

    async def _http_crl(self, url: str) -> bytes:
        return await http_get(url, self._executor, self._timeout)

    async def _ldap_crl(self, dn: str, prefer: LdapSource | None) -> bytes:
        sources = ([prefer] if prefer else []) + [s for s in self._ldap if s is not prefer]
        if not sources:
            raise CertdirError(f"{dn}: no LDAP directory is configured to read it from")
        errors: list[str] = []
        for source in sources:
            try:
                values = await source.read_binary(dn, _CRL_ATTRIBUTES)
            except CertdirError as exc:
                errors.append(str(exc))
                continue
            if values:
                return values[0]
        raise CertdirError(f"{dn}: " + ("; ".join(errors) if errors else "not in any directory"))


def _ocsp_signer(response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime) -> x509.Certificate | None:
    """The issuer itself, or a delegated responder certificate it issued for OCSP signing
    (RFC 6960 section 4.2.2.2)."""
    if _responder_is(response, issuer):
        return issuer
    for cert in response.certificates:
        if not _responder_is(response, cert) or cert.issuer != issuer.subject:
            continue
        try:
            cert.verify_directly_issued_by(issuer)
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in eku and cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return cert
    return None


def _responder_is(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    key_hash = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest  # SHA-1 of the key, RFC 6960
    return response.responder_key_hash == key_hash


def has_revocation_pointers(cert: x509.Certificate) -> bool:
    return bool(_ocsp_urls(cert) or _distribution_points(cert))


def _ocsp_urls(cert: x509.Certificate) -> list[str]:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [str(d.access_location.value) for d in aia
            if d.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
            and str(d.access_location.value).lower().startswith(("http://", "https://"))]


def ca_issuer_urls(cert: x509.Certificate) -> list[str]:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [str(d.access_location.value) for d in aia
            if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
            and str(d.access_location.value).lower().startswith(("http://", "https://"))]


def _distribution_points(cert: x509.Certificate) -> list[tuple[str, str]]:
    """("http", url) and ("ldap", dn) pairs, HTTP first (cheaper to cache and share)."""
    try:
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    http: list[tuple[str, str]] = []
    ldap: list[tuple[str, str]] = []
    for point in cdp:
        for name in point.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier):
                url = str(name.value)
                if url.lower().startswith(("http://", "https://")):
                    http.append(("http", url))
                elif url.lower().startswith("ldap"):
                    dn = _dn_from_ldap_url(url)
                    if dn:
                        ldap.append(("ldap", dn))
            elif isinstance(name, x509.DirectoryName):
                ldap.append(("ldap", _name_to_dn(name.value)))
    return http + ldap


def _dn_from_ldap_url(url: str) -> str:
    # ldap://host/cn=CRL1,cn=...,c=DK?certificateRevocationList;binary: the DN is read
    # from the configured directories (the host in the URL is often an old alias).
    return unquote(urlsplit(url).path.lstrip("/"))
