"""Certificates out of the files people have: PEM, DER, PKCS#7 bundles (.p7b/.p7c)
and signed mail (.eml with an S/MIME signature: the signer's certificate)."""

from __future__ import annotations

import email
import email.policy

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from certdir.results import CertdirError

_SMIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime",
                "application/pkcs7-signature", "application/x-pkcs7-signature")


def certificates_from_bytes(data: bytes, *, name: str = "input") -> list[x509.Certificate]:
    """Every certificate in the data; CertdirError naming the format problem if none."""
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN PKCS7-----") or stripped.startswith(b"-----BEGIN CMS-----"):
        return _pkcs7_pem(stripped, name)
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            return list(x509.load_pem_x509_certificates(data))
        except ValueError as exc:
            raise CertdirError(f"{name}: unreadable PEM certificate: {_first_line(exc)}")
    if _looks_like_mail(stripped):
        return _signed_mail(data, name)
    if stripped[:1] == b"\x30":
        try:
            return [x509.load_der_x509_certificate(data)]
        except ValueError:
            pass
        return _pkcs7_der(data, name)
    raise CertdirError(f"{name}: not a certificate (PEM, DER, PKCS#7 or signed .eml expected)")


def _pkcs7_pem(data: bytes, name: str) -> list[x509.Certificate]:
    try:
        return list(pkcs7.load_pem_pkcs7_certificates(data))
    except ValueError as exc:
        raise CertdirError(f"{name}: unreadable PKCS#7: {_first_line(exc)}")


def _pkcs7_der(data: bytes, name: str) -> list[x509.Certificate]:
    # asn1crypto reads the SignerInfos too, so the signer's own certificate can be
    # put first (a SET OF certificates has no order of its own).
    try:
        info = cms.ContentInfo.load(data, strict=True)
        if info["content_type"].native != "signed_data":
            raise CertdirError(f"{name}: PKCS#7 without certificates ({info['content_type'].native})")
        signed = info["content"]
        certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in signed["certificates"]
                 if c.name == "certificate"]
        signers = {(si["sid"].chosen["issuer"].dump(), si["sid"].chosen["serial_number"].native)
                   for si in signed["signer_infos"] if si["sid"].name == "issuer_and_serial_number"}
    except CertdirError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise CertdirError(f"{name}: not a certificate, PKCS#7 or signed mail ({_first_line(exc)})")
    if not certs:
        raise CertdirError(f"{name}: PKCS#7 holds no certificates")
    certs.sort(key=lambda c: (c.issuer.public_bytes(), c.serial_number) not in signers)
    return certs


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]


def _looks_like_mail(data: bytes) -> bool:
    head = data[:4096].lower()
    return b"content-type:" in head and (b"\nfrom:" in b"\n" + head or b"mime-version:" in head)


def _signed_mail(data: bytes, name: str) -> list[x509.Certificate]:
    message = email.message_from_bytes(data, policy=email.policy.default)
    for part in message.walk():
        if part.get_content_type() in _SMIME_TYPES:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and payload:
                return _pkcs7_der(payload, name)
    raise CertdirError(f"{name}: mail without an S/MIME signature")

