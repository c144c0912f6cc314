"""Certificates out of PEM, DER, PKCS#7 and signed mail; garbage says what it is not."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from certdir import CertdirError
from certdir.certfiles import certificates_from_bytes
from tests.fixtures.oces_pki import OcesPki


def test_pem_with_several_certificates(oces_pki: OcesPki) -> None:
    data = oces_pki.leaf("person").pem + oces_pki.oces2_ca.pem
    assert certificates_from_bytes(data) == [oces_pki.leaf("person").cert, oces_pki.oces2_ca.cert]


def test_der(oces_pki: OcesPki) -> None:
    assert certificates_from_bytes(oces_pki.leaf("ec").der) == [oces_pki.leaf("ec").cert]


@pytest.mark.parametrize("encoding", [serialization.Encoding.DER, serialization.Encoding.PEM])
def test_pkcs7_bundle(oces_pki: OcesPki, encoding: serialization.Encoding) -> None:
    certs = [oces_pki.leaf("employee3").cert, oces_pki.oces3_ca.cert]
    # A SET OF certificates: the order is the encoder's, not ours.
    found = certificates_from_bytes(pkcs7.serialize_certificates(certs, encoding))
    assert sorted(found, key=lambda c: c.serial_number) == sorted(certs, key=lambda c: c.serial_number)


def test_signed_mail_gives_the_signer_first(oces_pki: OcesPki) -> None:
    signer = oces_pki.leaf("signer")
    smime = pkcs7.PKCS7SignatureBuilder().set_data(b"Content-Type: text/plain\r\n\r\nHej\r\n").add_signer(
        signer.cert, signer.key, hashes.SHA256()).add_certificate(oces_pki.oces2_ca.cert).sign(  # type: ignore[arg-type]
        serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
    mail = b"From: afsender@kommune.test\r\nSubject: x\r\n" + smime
    certs = certificates_from_bytes(mail)
    assert certs[0] == signer.cert
    assert oces_pki.oces2_ca.cert in certs


@pytest.mark.parametrize(("data", "text"), [
    (b"hello", "not a certificate"),
    (b"\x30\x03\x02\x01\x05", "not a certificate, PKCS#7 or signed mail"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "unreadable PEM"),
    (b"From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nhi\r\n", "without an S/MIME signature"),
])
def test_garbage_is_refused_with_the_reason(data: bytes, text: str) -> None:
    with pytest.raises(CertdirError, match=text):
        certificates_from_bytes(data, name="input.bin")
