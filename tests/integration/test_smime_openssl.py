"""Every S/MIME variant, read back by OpenSSL's `cms` command: the independent reader."""

from __future__ import annotations

import base64
import email
import email.policy
import itertools
import re
import subprocess
from pathlib import Path

import pytest

from gateway.smime import Signer, SmimeOptions, encrypt_file
from tests.fixtures.smime_keys import (
    Identity,
    SmimePki,
    canonical_entity,
    expected_inner,
    openssl_decrypt,
    openssl_print,
    outer_fields,
    sample_messages,
)

VARIANTS = list(
    itertools.product(("aes256-cbc", "aes256-gcm"), ("rsa-pkcs1v15", "rsa-oaep"), ("issuer-serial", "ski"))
)
MESSAGES = sorted(sample_messages())

_CIPHER_PRINT = {
    "aes256-cbc": ("contentType: pkcs7-envelopedData", "aes-256-cbc (2.16.840.1.101.3.4.1.42)"),
    "aes256-gcm": (
        "contentType: id-smime-ct-authEnvelopedData",
        "aes-256-gcm (2.16.840.1.101.3.4.1.46)",
    ),
}


def _encrypt(tmp_path: Path, original: bytes, recipients: list[Identity], options: SmimeOptions) -> Path:
    source = tmp_path / "in.eml"
    source.write_bytes(original)
    destination = tmp_path / "out.eml"
    result = encrypt_file(source, destination, [r.cert for r in recipients], options)
    assert result.size == destination.stat().st_size
    return destination


def _assert_algorithms(printed: str, cipher: str, transport: str, rid: str, recipients: int) -> None:
    content_type, algorithm = _CIPHER_PRINT[cipher]
    assert content_type in printed
    assert f"algorithm: {algorithm}" in printed
    assert printed.count("d.ktri:") == recipients
    if transport == "rsa-oaep":
        assert printed.count("algorithm: rsaesOaep (1.2.840.113549.1.1.7)") == recipients
        # RFC 4055 parameters: SHA-256 for the hash and for MGF1.
        assert printed.count(":sha256") == 2 * recipients
        assert printed.count(":mgf1") == recipients
        assert "rsaEncryption" not in printed
    else:
        assert printed.count("algorithm: rsaEncryption (1.2.840.113549.1.1.1)") == recipients
        assert "rsaesOaep" not in printed
    if rid == "ski":
        assert printed.count("d.subjectKeyIdentifier:") == recipients
        assert "d.issuerAndSerialNumber" not in printed
    else:
        assert printed.count("d.issuerAndSerialNumber:") == recipients
        assert "d.subjectKeyIdentifier" not in printed


@pytest.mark.parametrize("message", MESSAGES)
@pytest.mark.parametrize(("cipher", "transport", "rid"), VARIANTS)
def test_openssl_decrypts_every_variant_to_the_original_entity(
    tmp_path: Path, smime_pki: SmimePki, message: str, cipher: str, transport: str, rid: str
) -> None:
    original = sample_messages()[message]
    options = SmimeOptions(cipher=cipher, key_transport=transport, recipient_identifier=rid)
    out = _encrypt(tmp_path, original, [smime_pki.bob], options)

    assert canonical_entity(openssl_decrypt(out, smime_pki.bob)) == expected_inner(original)
    _assert_algorithms(openssl_print(out), cipher, transport, rid, recipients=1)


@pytest.mark.parametrize(("cipher", "transport", "rid"), VARIANTS)
def test_three_recipients_and_the_organisation_each_decrypt_the_same_cms(
    tmp_path: Path, smime_pki: SmimePki, cipher: str, transport: str, rid: str
) -> None:
    original = sample_messages()["attachments"]
    options = SmimeOptions(
        cipher=cipher,
        key_transport=transport,
        recipient_identifier=rid,
        extra_recipients=(smime_pki.organisation.cert,),
    )
    readers = [smime_pki.alice, smime_pki.bob, smime_pki.carol]
    out = _encrypt(tmp_path, original, readers, options)

    for who in [*readers, smime_pki.organisation]:
        assert canonical_entity(openssl_decrypt(out, who)) == expected_inner(original), who.name
    _assert_algorithms(openssl_print(out), cipher, transport, rid, recipients=4)


def test_a_certificate_outside_the_recipients_cannot_decrypt(tmp_path: Path, smime_pki: SmimePki) -> None:
    out = _encrypt(tmp_path, sample_messages()["plain_utf8"], [smime_pki.alice], SmimeOptions())
    with pytest.raises(subprocess.CalledProcessError):
        openssl_decrypt(out, smime_pki.carol)


def test_ski_falls_back_to_issuer_and_serial_for_a_certificate_without_ski(
    tmp_path: Path, smime_pki: SmimePki
) -> None:
    original = sample_messages()["plain_utf8"]
    out = _encrypt(
        tmp_path, original, [smime_pki.alice, smime_pki.no_ski], SmimeOptions(recipient_identifier="ski")
    )
    printed = openssl_print(out)
    assert printed.count("d.subjectKeyIdentifier:") == 1
    assert printed.count("d.issuerAndSerialNumber:") == 1
    assert "version: 2" in printed  # RFC 5652 §6.1: a version-2 RecipientInfo makes it 2
    for who in (smime_pki.alice, smime_pki.no_ski):
        assert canonical_entity(openssl_decrypt(out, who)) == expected_inner(original)


def test_outer_message_keeps_trace_and_address_fields_and_drops_bcc(
    tmp_path: Path, smime_pki: SmimePki
) -> None:
    original = sample_messages()["attachments"]
    out = _encrypt(tmp_path, original, [smime_pki.alice], SmimeOptions()).read_bytes()
    fields = outer_fields(out)
    names = [name for name, _ in fields]
    originals = dict(outer_fields(original))

    for name in ("received", "from", "to", "cc", "reply-to", "date", "message-id",
                 "in-reply-to", "references", "subject", "x-mailer"):
        assert dict(fields)[name] == originals[name], name
    assert "bcc" not in names
    assert b"hemmelig@kommune.example" not in out
    assert names.count("content-type") == 1 and names.count("mime-version") == 1
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    assert parsed.get_content_type() == "application/pkcs7-mime"
    assert parsed.get_param("smime-type") == "enveloped-data"
    assert parsed.get_param("name") == "smime.p7m"
    assert parsed["Content-Transfer-Encoding"] == "base64"
    assert parsed.get_filename() == "smime.p7m"
    # Nothing of the original content is readable outside.
    assert b"application/pdf" not in out and b"journal%C3%A6" not in out
    assert b"Se bilag" not in out and b"mix-2" not in out


@pytest.mark.parametrize("cipher", ["aes256-cbc", "aes256-gcm"])
def test_body_is_base64_in_76_columns_with_crlf(tmp_path: Path, smime_pki: SmimePki, cipher: str) -> None:
    out = _encrypt(
        tmp_path, sample_messages()["html_inline_image"], [smime_pki.alice], SmimeOptions(cipher=cipher)
    ).read_bytes()
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert body.endswith(b"\r\n") and b"\n" not in body.replace(b"\r\n", b"")
    lines = body[:-2].split(b"\r\n")
    assert all(len(line) == 76 for line in lines[:-1]) and 0 < len(lines[-1]) <= 76
    assert all(re.fullmatch(rb"[A-Za-z0-9+/=]+", line) for line in lines)
    der = base64.b64decode(b"".join(lines), validate=True)
    # The DER is the CMS OpenSSL reads: the body decoded and given as DER decrypts too.
    der_file = tmp_path / "cms.der"
    der_file.write_bytes(der)
    assert canonical_entity(openssl_decrypt(der_file, smime_pki.alice, inform="DER")) == expected_inner(
        sample_messages()["html_inline_image"]
    )
    if cipher == "aes256-gcm":
        assert b"smime-type=authEnveloped-data" in head


def _decrypt_and_verify(out: Path, who: Identity, pki: SmimePki, tmp_path: Path) -> tuple[bytes, bytes]:
    decrypted = tmp_path / "decrypted.eml"
    decrypted.write_bytes(openssl_decrypt(out, who))
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-in", str(decrypted), "-CAfile", str(pki.ca_file)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return decrypted.read_bytes(), verified.stdout


@pytest.mark.parametrize(
    ("cipher", "transport", "rid"),
    [("aes256-cbc", "rsa-pkcs1v15", "issuer-serial"), ("aes256-gcm", "rsa-oaep", "ski")],
)
@pytest.mark.parametrize("message", ["plain_utf8", "attachments"])
def test_signed_then_encrypted_verifies_with_openssl(
    tmp_path: Path, smime_pki: SmimePki, message: str, cipher: str, transport: str, rid: str
) -> None:
    original = sample_messages()[message]
    signer = Signer.from_files(
        smime_pki.signer.cert_path, smime_pki.signer.key_path, smime_pki.intermediate.cert_path
    )
    options = SmimeOptions(cipher=cipher, key_transport=transport, recipient_identifier=rid, signer=signer)
    out = _encrypt(tmp_path, original, [smime_pki.alice], options)

    decrypted, content = _decrypt_and_verify(out, smime_pki.alice, smime_pki, tmp_path)
    signed = email.message_from_bytes(decrypted, policy=email.policy.default)
    assert signed.get_content_type() == "multipart/signed"
    assert signed.get_param("micalg") == "sha-256"
    assert signed.get_param("protocol") == "application/pkcs7-signature"
    assert canonical_entity(content) == expected_inner(original)

    # The signature carries the signer's chain (the intermediate), so a reader
    # that trusts only the root can verify it.
    p7s = tmp_path / "sig.p7s"
    p7s.write_bytes(signed.get_payload()[1].get_payload(decode=True))
    certs = subprocess.run(
        ["openssl", "pkcs7", "-inform", "DER", "-in", str(p7s), "-print_certs", "-noout"],
        check=True, capture_output=True, text=True,
    ).stdout
    assert "Sikkermail Test Issuing CA" in certs and "CN = Kommunen," in certs
    sig_print = subprocess.run(
        ["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(p7s)],
        check=True, capture_output=True, text=True,
    ).stdout
    assert "algorithm: sha256 (2.16.840.1.101.3.4.2.1)" in sig_print
    assert "object: messageDigest (1.2.840.113549.1.9.4)" in sig_print
    assert "eContent: <ABSENT>" in sig_print  # detached (RFC 8551 §3.5.3)


def test_a_tampered_signed_message_fails_verification(tmp_path: Path, smime_pki: SmimePki) -> None:
    signer = Signer.from_files(
        smime_pki.signer.cert_path, smime_pki.signer.key_path, smime_pki.intermediate.cert_path
    )
    out = _encrypt(
        tmp_path, sample_messages()["plain_utf8"], [smime_pki.alice], SmimeOptions(signer=signer)
    )
    decrypted = openssl_decrypt(out, smime_pki.alice)
    tampered = tmp_path / "tampered.eml"
    tampered.write_bytes(decrypted.replace("Blåbærgrød".encode(), "Rødgrød".encode()))
    assert tampered.read_bytes() != decrypted
    result = subprocess.run(
        ["openssl", "cms", "-verify", "-in", str(tampered), "-CAfile", str(smime_pki.ca_file)],
        capture_output=True,
    )
    assert result.returncode != 0


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("cipher", ["aes256-cbc", "aes256-gcm"])
def test_protected_headers_per_rfc_9788(
    tmp_path: Path, smime_pki: SmimePki, cipher: str, signed: bool
) -> None:
    original = sample_messages()["plain_utf8"]
    signer = (
        Signer.from_files(smime_pki.signer.cert_path, smime_pki.signer.key_path, smime_pki.intermediate.cert_path)
        if signed
        else None
    )
    options = SmimeOptions(cipher=cipher, protect_headers=True, signer=signer)
    out = _encrypt(tmp_path, original, [smime_pki.alice], options)

    outer = dict(outer_fields(out.read_bytes()))
    assert outer["subject"] == "[...]"
    assert "Afgørelse" not in out.read_text("utf-8", errors="replace")
    assert outer["from"] == dict(outer_fields(original))["from"]

    if signed:
        decrypted, payload = _decrypt_and_verify(out, smime_pki.alice, smime_pki, tmp_path)
    else:
        payload = openssl_decrypt(out, smime_pki.alice)
    inner = email.message_from_bytes(payload, policy=email.policy.default)
    assert inner.get_param("hp") == "cipher"
    assert inner["Subject"] == "Afgørelse i sag 2026-117 – æøå ÆØÅ"
    assert inner["Message-ID"] == "<20261122060000.abc@kommune.example>"
    assert "Søren Æblerød" in str(inner["From"])
    assert inner["Bcc"] is None and inner["Received"] is None
    assert "Subject: [...]" in inner.get_all("HP-Outer")
    fields, body = canonical_entity(payload)
    assert body == expected_inner(original)[1]
    assert inner.get_content().replace("\r\n", "\n") == "Kære Alice,\n\nVedlagt afgørelsen. Blåbærgrød og ærø.\n-- \nSøren\n"


def test_oaep_parameters_are_encoded_exactly_as_openssl_encodes_them(
    tmp_path: Path, smime_pki: SmimePki
) -> None:
    from asn1crypto import cms as asn1_cms

    ours = _encrypt(tmp_path, sample_messages()["no_mime"], [smime_pki.alice], SmimeOptions(key_transport="rsa-oaep"))
    theirs = tmp_path / "openssl.der"
    subprocess.run(
        [
            "openssl", "cms", "-encrypt", "-aes256", "-outform", "DER", "-in", str(tmp_path / "in.eml"),
            "-out", str(theirs), "-recip", str(smime_pki.alice.cert_path),
            "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha256",
        ],
        check=True, capture_output=True,
    )

    def key_encryption_algorithm(der: bytes) -> bytes:
        info = asn1_cms.ContentInfo.load(der)
        return info["content"]["recipient_infos"][0].chosen["key_encryption_algorithm"].dump()

    ours_der = base64.b64decode(ours.read_bytes().partition(b"\r\n\r\n")[2])
    assert key_encryption_algorithm(ours_der) == key_encryption_algorithm(theirs.read_bytes())
