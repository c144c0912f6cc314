"""Is this certificate revoked? OCSP where the certificate names a responder, else
the CRLs of its distribution points: HTTP URLs and (OCES2) LDAP DirNames of
partitioned CRLs. CRLs and OCSP answers are cached until their nextUpdate (at
most an hour), in memory: per process, bounded, gone at a restart."""

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
# OCSP answers kept at most: beyond this many certificates, the oldest go first.
_OCSP_CACHE_SIZE = 10_000


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
        # By RFC 6960 CertID: (SHA-1 of the issuer's key, serial) -> (answer, keep until)
        self._ocsp_answers: dict[tuple[bytes, int], tuple[RevocationResult, dt.datetime]] = {}

    async def check(self, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime,
                    prefer: LdapSource | None = None) -> RevocationResult:
        problems: list[str] = []
        urls = _ocsp_urls(cert)
        if urls:
            key = (_key_hash(issuer), cert.serial_number)
            cached = self._ocsp_answers.get(key)
            if cached is not None and cached[1] > now:
                return cached[0]
        for url in urls:
            try:
                answer, next_update = await self._ocsp(cert, issuer, url, now)
            except CertdirError as exc:
                problems.append(f"OCSP {exc}")
                continue
            if next_update is not None:  # RFC 6960 4.2.2.1: no nextUpdate, newer news any time
                self._remember_ocsp(key, answer, min(next_update, now + _CRL_MAX_AGE), now)
            return answer
        for point in _distribution_points(cert):
            kind, where = point.kind, point.where
            try:
                crl = await self._crl(kind, where, issuer, now, prefer)
                partial = _scope_problem(crl, point, cert)
            except CertdirError as exc:
                problems.append(f"CRL {exc}")
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None:
                return RevocationResult(RevocationStatus.REVOKED,
                                        f"revoked on {entry.revocation_date_utc:%Y-%m-%d} (CRL {where})")
            if partial:
                problems.append(f"CRL {where}: {partial}")
                continue
            return RevocationResult(RevocationStatus.GOOD, f"not revoked (CRL {where})")
        if not problems:
            return RevocationResult(RevocationStatus.UNKNOWN,
                                    "revocation status unknown: the certificate names no CRL or OCSP responder")
        return RevocationResult(RevocationStatus.UNKNOWN, "revocation status unknown: " + "; ".join(problems))

    # -- OCSP (RFC 6960) -------------------------------------------------------------

    def _remember_ocsp(self, key: tuple[bytes, int], answer: RevocationResult, until: dt.datetime,
                       now: dt.datetime) -> None:
        answers = self._ocsp_answers
        if len(answers) >= _OCSP_CACHE_SIZE:
            for old in [k for k, (_, keep) in answers.items() if keep <= now]:
                del answers[old]
            while len(answers) >= _OCSP_CACHE_SIZE:
                del answers[next(iter(answers))]  # dicts keep insertion order: the oldest
        answers.pop(key, None)
        answers[key] = (answer, until)

    async def _ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, url: str,
                    now: dt.datetime) -> tuple[RevocationResult, dt.datetime | None]:
        """The responder's answer about `cert`, and its nextUpdate."""
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
                return RevocationResult(RevocationStatus.GOOD, f"not revoked (OCSP {url})"), single.next_update_utc
            if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
                when = single.revocation_time_utc
                return RevocationResult(RevocationStatus.REVOKED,
                                        f"revoked on {when:%Y-%m-%d} (OCSP {url})" if when
                                        else f"revoked (OCSP {url})"), single.next_update_utc
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


def _key_hash(cert: x509.Certificate) -> bytes:
    # RFC 6960 4.1.1 issuerKeyHash: SHA-1 of the subjectPublicKey bits, which is
    # what RFC 5280 4.2.1.2 method (1) computes for a key identifier.
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


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


@dataclass(frozen=True)
class _Point:
    """Where to fetch one CRL, and the names of the distribution point it came from
    (what the CRL's IssuingDistributionPoint must name, RFC 5280 6.3.3 (b)(2)(i))."""

    kind: str  # "http" or "ldap"
    where: str  # the URL or the DN
    names: frozenset[str]  # _general_name_key() of every name of the distribution point


def _general_name_key(name: x509.GeneralName) -> str | None:
    # RFC 5280 7.1: DNs compare attribute by attribute without case; the RFC 4514
    # form of cryptography's Name keeps the order, so folding its case suffices here.
    if isinstance(name, x509.DirectoryName):
        return "dn:" + name.value.rfc4514_string().casefold()
    if isinstance(name, x509.UniformResourceIdentifier):
        return "uri:" + str(name.value)
    return None


def _point_names(full_name: Sequence[x509.GeneralName] | None, relative: x509.RelativeDistinguishedName | None,
                 crl_issuer: x509.Name) -> frozenset[str]:
    """A distribution point name as comparable keys; nameRelativeToCRLIssuer is
    appended to the CRL issuer's DN (RFC 5280 4.2.1.13)."""
    if relative is not None:
        full_name = [x509.DirectoryName(x509.Name([*crl_issuer.rdns, relative]))]
    return frozenset(k for k in (_general_name_key(n) for n in full_name or []) if k)


def _distribution_points(cert: x509.Certificate) -> list[_Point]:
    """HTTP URLs and LDAP DNs to fetch CRLs from, HTTP first (cheaper to cache and share)."""
    try:
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    http: list[_Point] = []
    ldap: list[_Point] = []
    for point in cdp:
        names = _point_names(point.full_name, point.relative_name, cert.issuer)
        for name in point.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier):
                url = str(name.value)
                if url.lower().startswith(("http://", "https://")):
                    http.append(_Point("http", url, names))
                elif url.lower().startswith("ldap"):
                    dn = _dn_from_ldap_url(url)
                    if dn:
                        ldap.append(_Point("ldap", dn, names))
            elif isinstance(name, x509.DirectoryName):
                ldap.append(_Point("ldap", _name_to_dn(name.value), names))
        if point.relative_name is not None:
            ldap.append(_Point("ldap", _name_to_dn(x509.Name([*cert.issuer.rdns, point.relative_name])), names))
    return http + ldap


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _scope_problem(crl: x509.CertificateRevocationList, point: _Point, cert: x509.Certificate) -> str:
    """RFC 5280 6.3.3 (b)(2): whether this CRL covers `cert` at all. A partitioned CRL
    (OCES2 publishes one per DirName) that is some other partition's says nothing
    about this certificate: believing it would turn "unknown" into "not revoked".

    CertdirError when the CRL does not cover the certificate; "" when it fully
    does; else why it covers only part (it can show revoked, never good)."""
    try:
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    except x509.ExtensionNotFound:
        return ""  # a complete CRL for everything the issuer issued
    if idp.indirect_crl:
        raise CertdirError(f"{point.where}: indirect CRL (not supported)")
    if idp.only_contains_attribute_certs:
        raise CertdirError(f"{point.where}: CRL covers attribute certificates only")
    if _is_ca(cert):
        if idp.only_contains_user_certs:
            raise CertdirError(f"{point.where}: CRL covers end-entity certificates only, not CAs")
    elif idp.only_contains_ca_certs:
        raise CertdirError(f"{point.where}: CRL covers CA certificates only")
    if idp.full_name is not None or idp.relative_name is not None:
        covered = _point_names(idp.full_name, idp.relative_name, crl.issuer)
        if point.names and not (covered & point.names):
            shown = ", ".join(sorted(k.split(":", 1)[1] for k in covered)) or "no name"
            raise CertdirError(f"{point.where}: CRL is for another partition ({shown})")
    if idp.only_some_reasons is not None:
        return "CRL covers only some revocation reasons"
    return ""


def _dn_from_ldap_url(url: str) -> str:
    # ldap://host/cn=CRL1,cn=...,c=DK?certificateRevocationList;binary: the DN is read
    # from the configured directories (the host in the URL is often an old alias).
    return unquote(urlsplit(url).path.lstrip("/"))
