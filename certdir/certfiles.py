"""Certificates out of the files people have: PEM, DER, PKCS#7 bundles (.p7b/.p7c)
and signed mail (.eml with an S/MIME signature: the signer's certificate)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from certdir.results import CertdirError

_SMIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime",
                "application/pkcs7-signature", "application/x-pkcs7-signature")


@dataclass(frozen=True)
class CertificateFile:
    certificates: tuple[x509.Certificate, ...]  # every certificate, a signer's own first
    # When the file is a signature (signed mail, SignedData with SignerInfos): the
    # signers' own certificates, found among `certificates`. Only they belong to the
    # sender; the rest is what the signing client chose to include (its CA chain,
    # sometimes certificates of other people). None for a plain bundle.
    signers: tuple[x509.Certificate, ...] | None = None


def certificates_from_bytes(data: bytes, *, name: str = "input") -> list[x509.Certificate]:
    """Every certificate in the data; CertdirError naming the format problem if none."""
    return list(read_certificate_file(data, name=name).certificates)


def read_certificate_file(data: bytes, *, name: str = "input") -> CertificateFile:
    """The certificates in the data, and who signed it where it is a signature."""
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN PKCS7-----") or stripped.startswith(b"-----BEGIN CMS-----"):
        return CertificateFile(tuple(_pkcs7_pem(stripped, name)))
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            return CertificateFile(tuple(x509.load_pem_x509_certificates(data)))
        except ValueError as exc:
            raise CertdirError(f"{name}: unreadable PEM certificate: {_first_line(exc)}")
    if _looks_like_mail(stripped):
        return _signed_mail(data, name)
    if stripped[:1] == b"\x30":
        try:
            return CertificateFile((x509.load_der_x509_certificate(data),))
        except ValueError:
            pass
        return _pkcs7_der(data, name)
    raise CertdirError(f"{name}: not a certificate (PEM, DER, PKCS#7 or signed .eml expected)")


def _pkcs7_pem(data: bytes, name: str) -> list[x509.Certificate]:
    try:
        return list(pkcs7.load_pem_pkcs7_certificates(data))
    except ValueError as exc:
        raise CertdirError(f"{name}: unreadable PKCS#7: {_first_line(exc)}")


def _pkcs7_der(data: bytes, name: str) -> CertificateFile:
    # asn1crypto reads the SignerInfos too, so the signer's own certificate can be
    # put first (a SET OF certificates has no order of its own).
    try:
        info = cms.ContentInfo.load(data, strict=True)
        if info["content_type"].native != "signed_data":
            raise CertdirError(f"{name}: PKCS#7 without certificates ({info['content_type'].native})")
        signed = info["content"]
        certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in signed["certificates"]
                 if c.name == "certificate"]
        infos = list(signed["signer_infos"])
        signers = {(si["sid"].chosen["issuer"].dump(), si["sid"].chosen["serial_number"].native)
                   for si in infos if si["sid"].name == "issuer_and_serial_number"}
        key_ids = {si["sid"].chosen.native for si in infos if si["sid"].name == "subject_key_identifier"}
    except CertdirError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise CertdirError(f"{name}: not a certificate, PKCS#7 or signed mail ({_first_line(exc)})")
    if not certs:
        raise CertdirError(f"{name}: PKCS#7 holds no certificates")
    def signed_it(cert: x509.Certificate) -> bool:
        return (cert.issuer.public_bytes(), cert.serial_number) in signers or _key_id(cert) in key_ids

    certs.sort(key=lambda c: not signed_it(c))
    return CertificateFile(tuple(certs), tuple(c for c in certs if signed_it(c)) if infos else None)


def _key_id(cert: x509.Certificate) -> bytes | None:
    # RFC 5652 5.3: a SignerIdentifier by subjectKeyIdentifier names the extension's value.
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, ValueError):
        return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]


def _looks_like_mail(data: bytes) -> bool:
    head = data[:4096].lower()
    return b"content-type:" in head and (b"\nfrom:" in b"\n" + head or b"mime-version:" in head)


def _signed_mail(data: bytes, name: str) -> CertificateFile:
    message = email.message_from_bytes(data, policy=email.policy.default)
    for part in message.walk():
        if part.get_content_type() in _SMIME_TYPES:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and payload:
                return _pkcs7_der(payload, name)
    raise CertdirError(f"{name}: mail without an S/MIME signature")

