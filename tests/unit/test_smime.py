"""gateway.smime and gateway.cms without external tools: structure, canonical form, keys.

The command-line readers (OpenSSL, gpgsm) are in tests/integration/test_smime_*.py.
Here the CMS is parsed with asn1crypto in strict mode (every definite length must
be exact) and decrypted with cryptography's primitives.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import replace
from pathlib import Path

import pytest
from asn1crypto import cms, core
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.smime as smime
from gateway.config import SmimeConfig
from gateway.smime import (
    SmimeError,
    SmimeOptions,
    check_smime_config,
    encrypt_bytes,
    encrypt_file,
)
from tests.fixtures.smime_keys import (
    Identity,
    SmimePki,
    canonical_entity,
    expected_inner,
    sample_messages,
)


class _GcmParameters(core.Sequence):  # RFC 5084 §3.2; asn1crypto 1.5 has no spec for it
    _fields = [("aes_nonce", core.OctetString), ("aes_icvlen", core.Integer, {"default": 12})]


def _gcm_parameters(params: core.Asn1Value) -> tuple[bytes, int]:
    parsed = _GcmParameters.load(params.dump(), strict=True)
    return parsed["aes_nonce"].native, parsed["aes_icvlen"].native


def _cms(message: bytes) -> cms.ContentInfo:
    body = message.partition(b"\r\n\r\n")[2]
    return cms.ContentInfo.load(base64.b64decode(body.replace(b"\r\n", b""), validate=True), strict=True)


def _content_key(info: cms.ContentInfo, who: Identity, index: int = 0) -> bytes:
    ktri = info["content"]["recipient_infos"][index].chosen
    algorithm = ktri["key_encryption_algorithm"]["algorithm"].native
    pad: padding.AsymmetricPadding = (
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        if algorithm == "rsaes_oaep"
        else padding.PKCS1v15()
    )
    return who.key.decrypt(ktri["encrypted_key"].native, pad)


def _decrypt(message: bytes, who: Identity) -> bytes:
    """An independent reader built from asn1crypto and cryptography."""
    info = _cms(message)
    key = _content_key(info, who)
    content = info["content"]
    if info["content_type"].native == "enveloped_data":
        eci = content["encrypted_content_info"]
        iv = eci["content_encryption_algorithm"]["parameters"].native
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = dec.update(eci["encrypted_content"].native) + dec.finalize()
        assert 1 <= padded[-1] <= 16 and padded.endswith(bytes([padded[-1]]) * padded[-1])
        return padded[: -padded[-1]]
    eci = content["auth_encrypted_content_info"]
    nonce, _ = _gcm_parameters(eci["content_encryption_algorithm"]["parameters"])
    dec = Cipher(algorithms.AES(key), modes.GCM(nonce, content["mac"].native)).decryptor()
    return dec.update(eci["encrypted_content"].native) + dec.finalize()


# --- the CMS itself --------------------------------------------------------------------


@pytest.mark.parametrize("cipher", ["aes256-cbc", "aes256-gcm"])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 56, 57, 58, 1000, 70_000])
def test_der_lengths_are_exact_for_every_content_size(
    smime_pki: SmimePki, cipher: str, size: int
) -> None:
    original = b"Content-Type: text/plain\r\n\r\n" + (b"x" * size)
    out = encrypt_bytes(original, [smime_pki.alice.cert], SmimeOptions(cipher=cipher))
    assert _decrypt(out, smime_pki.alice) == original


def test_each_message_gets_a_fresh_content_key_and_iv(smime_pki: SmimePki) -> None:
    message = sample_messages()["plain_utf8"]
    first = _cms(encrypt_bytes(message, [smime_pki.alice.cert], SmimeOptions()))
    second = _cms(encrypt_bytes(message, [smime_pki.alice.cert], SmimeOptions()))
    assert len(_content_key(first, smime_pki.alice)) == 32  # AES-256
    assert _content_key(first, smime_pki.alice) != _content_key(second, smime_pki.alice)
    iv = lambda info: info["content"]["encrypted_content_info"]["content_encryption_algorithm"][  # noqa: E731
        "parameters"
    ].native
    assert iv(first) != iv(second)


def test_all_recipients_share_one_content_key(smime_pki: SmimePki) -> None:
    out = encrypt_bytes(
        sample_messages()["attachments"],
        [smime_pki.alice.cert, smime_pki.bob.cert],
        SmimeOptions(extra_recipients=(smime_pki.organisation.cert,)),
    )
    info = _cms(out)
    keys = {
        _content_key(info, who, i)
        for i, who in enumerate((smime_pki.alice, smime_pki.bob, smime_pki.organisation))
    }
    assert len(keys) == 1


def test_recipients_keep_their_order_with_the_organisation_last_and_no_duplicates(
    smime_pki: SmimePki,
) -> None:
    options = SmimeOptions(extra_recipients=(smime_pki.organisation.cert, smime_pki.alice.cert))
    result_out = io.BytesIO()
    result = smime._encrypt(
        io.BytesIO(sample_messages()["plain_utf8"]),
        result_out,
        [smime_pki.bob.cert, smime_pki.alice.cert],
        options,
    )
    infos = _cms(result_out.getvalue())["content"]["recipient_infos"]
    serials = [ri.chosen["rid"].chosen["serial_number"].native for ri in infos]
    expected = [c.serial_number for c in (smime_pki.bob.cert, smime_pki.alice.cert, smime_pki.organisation.cert)]
    assert serials == expected
    assert result.recipients == 3


def test_version_follows_rfc_5652_for_issuer_serial_and_ski(smime_pki: SmimePki) -> None:
    message = sample_messages()["no_mime"]
    plain = _cms(encrypt_bytes(message, [smime_pki.alice.cert], SmimeOptions()))
    ski = _cms(encrypt_bytes(message, [smime_pki.alice.cert], SmimeOptions(recipient_identifier="ski")))
    gcm = _cms(encrypt_bytes(message, [smime_pki.alice.cert], SmimeOptions(cipher="aes256-gcm", recipient_identifier="ski")))
    assert plain["content"]["version"].native == "v0"
    assert ski["content"]["version"].native == "v2"
    assert gcm["content"]["version"].native == "v0"  # RFC 5083: AuthEnvelopedData is always 0
    rid = ski["content"]["recipient_infos"][0].chosen["rid"]
    expected = smime_pki.alice.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert rid.name == "subject_key_identifier" and rid.chosen.native == expected


def test_gcm_parameters_carry_a_12_octet_nonce_and_16_octet_tag(smime_pki: SmimePki) -> None:
    out = encrypt_bytes(sample_messages()["no_mime"], [smime_pki.alice.cert], SmimeOptions(cipher="aes256-gcm"))
    content = _cms(out)["content"]
    params = content["auth_encrypted_content_info"]["content_encryption_algorithm"]["parameters"]
    nonce, icv_length = _gcm_parameters(params)
    assert len(nonce) == 12 and icv_length == 16
    assert len(content["mac"].native) == 16


def test_a_flipped_ciphertext_bit_fails_gcm_authentication(smime_pki: SmimePki) -> None:
    out = encrypt_bytes(sample_messages()["no_mime"], [smime_pki.alice.cert], SmimeOptions(cipher="aes256-gcm"))
    info = _cms(out)
    key = _content_key(info, smime_pki.alice)
    eci = info["content"]["auth_encrypted_content_info"]
    nonce, _ = _gcm_parameters(eci["content_encryption_algorithm"]["parameters"])
    data = bytearray(eci["encrypted_content"].native)
    data[0] ^= 1
    dec = Cipher(algorithms.AES(key), modes.GCM(nonce, info["content"]["mac"].native)).decryptor()
    dec.update(bytes(data))
    with pytest.raises(InvalidTag):
        dec.finalize()


# --- input handling --------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"\r")), chunk=st.integers(1, 9))
def test_body_is_canonicalised_to_crlf_with_the_promised_length(body: bytes, chunk: int) -> None:
    old = smime.CHUNK
    smime.CHUNK = chunk  # split CRLF pairs across reads
    try:
        src = io.BytesIO(b"X: y\r\n\r\n" + body)
        scanned = smime._scan_body(src, 8)
        produced = b"".join(smime._body_chunks(src, scanned))
    finally:
        smime.CHUNK = old
    assert produced == re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    assert scanned.length == len(produced)
    assert scanned.canonical == (produced == body)


def test_bare_lf_source_arrives_crlf_canonical(smime_pki: SmimePki) -> None:
    original = sample_messages()["attachments"]
    bare = original.replace(b"\r\n", b"\n")
    inner = _decrypt(encrypt_bytes(bare, [smime_pki.alice.cert], SmimeOptions()), smime_pki.alice)
    assert b"\n" not in inner.replace(b"\r\n", b"")
    assert canonical_entity(inner) == expected_inner(original)


def test_folded_fields_stay_whole_and_structural_fields_go_inside() -> None:
    fields, offset = smime._read_header(
        io.BytesIO(b"Subject: a\r\n b\r\nContent-Type: text/plain;\r\n\tcharset=utf-8\r\nBcc: x\r\n\r\nbody")
    )
    assert [f.name for f in fields] == ["subject", "content-type", "bcc"]
    assert fields[0].raw == b"Subject: a\r\n b\r\n"
    assert offset == len(b"Subject: a\r\n b\r\nContent-Type: text/plain;\r\n\tcharset=utf-8\r\nBcc: x\r\n\r\n")
    outer, inner = smime._plan_headers(fields, protect=False)
    assert outer == [b"Subject: a\r\n b\r\n"]
    assert inner == b"Content-Type: text/plain;\r\n\tcharset=utf-8\r\n\r\n"


@pytest.mark.parametrize(
    ("source", "body"),
    [
        (b"Subject: only headers\r\n", b""),
        (b"\r\nno header fields at all\r\n", b"no header fields at all\r\n"),
        (b"Subject: empty body\r\n\r\n", b""),
    ],
)
def test_degenerate_messages_still_make_a_valid_entity(smime_pki: SmimePki, source: bytes, body: bytes) -> None:
    inner = _decrypt(encrypt_bytes(source, [smime_pki.alice.cert], SmimeOptions()), smime_pki.alice)
    assert inner == b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body


def test_dkim_arc_and_resent_bcc_are_not_carried_over(smime_pki: SmimePki) -> None:
    source = (
        b"DKIM-Signature: v=1; a=rsa-sha256; d=kommune.example; bh=abc; b=def\r\n"
        b"ARC-Seal: i=1; cv=none\r\nFrom: a@kommune.example\r\nResent-Bcc: r@kommune.example\r\n"
        b"Subject: s\r\n\r\nhi\r\n"
    )
    out = encrypt_bytes(source, [smime_pki.alice.cert], SmimeOptions())
    head = out.partition(b"\r\n\r\n")[0]
    assert b"DKIM-Signature" not in head and b"ARC-Seal" not in head and b"Resent-Bcc" not in head
    assert b"From: a@kommune.example" in head


def test_protected_headers_move_copies_inside_and_obscure_the_subject() -> None:
    fields, _ = smime._read_header(
        io.BytesIO(
            b"Received: by x\r\nFrom: a@b\r\nSubject: Hemmeligt\r\nKeywords: k\r\nBcc: c@d\r\n"
            b"Content-Type: text/plain\r\n\r\nhi"
        )
    )
    outer, inner = smime._plan_headers(fields, protect=True)
    assert outer == [b"Received: by x\r\n", b"From: a@b\r\n", b"Subject: [...]\r\n"]
    assert inner == (
        b"From: a@b\r\nSubject: Hemmeligt\r\nKeywords: k\r\n"
        b"HP-Outer: From: a@b\r\nHP-Outer: Subject: [...]\r\n"
        b'Content-Type: text/plain; hp="cipher"\r\n\r\n'
    )


# --- base64 output ---------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_base64_output_matches_the_reference_whatever_the_write_sizes(data: bytes, cuts: list[int]) -> None:
    out = io.BytesIO()
    writer = smime._Base64Out(out)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for start, end in zip(bounds, bounds[1:], strict=False):
        writer.write(data[start:end])
    writer.close()
    assert out.getvalue() == base64.encodebytes(data).replace(b"\n", b"\r\n")
    assert writer.written == len(out.getvalue())


def test_numpy_and_stdlib_line_layout_agree() -> None:
    b64 = base64.b64encode(bytes(range(256)) * 57)  # a whole number of 76-char lines
    assert len(b64) % 76 == 0
    assert bytes(smime._wrap_full_lines_numpy(b64)) == smime._wrap_full_lines_stdlib(b64)
    assert smime._wrap_full_lines_stdlib(b64) == base64.encodebytes(base64.b64decode(b64)).replace(b"\n", b"\r\n")


# --- options and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("cipher", "aes128-cbc"), ("key_transport", "rsa-pss"), ("recipient_identifier", "email")],
)
def test_unknown_option_values_are_refused_by_name(field: str, value: str) -> None:
    with pytest.raises(SmimeError, match=field):
        SmimeOptions(**{field: value})


def test_without_recipients_nothing_is_written(tmp_path: Path) -> None:
    source = tmp_path / "in.eml"
    source.write_bytes(b"Subject: x\r\n\r\nhi\r\n")
    (tmp_path / "out.eml").write_bytes(b"stale")
    with pytest.raises(SmimeError, match="no recipient"):
        encrypt_file(source, tmp_path / "out.eml", [], SmimeOptions())
    assert not (tmp_path / "out.eml").exists()


def test_an_ec_recipient_is_refused_with_its_subject(smime_pki: SmimePki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(smime_pki.alice.cert.subject)
        .issuer_name(smime_pki.alice.cert.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(smime_pki.alice.cert.not_valid_before_utc)
        .not_valid_after(smime_pki.alice.cert.not_valid_after_utc)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(SmimeError, match="Alice Advokat.*only RSA"):
        encrypt_bytes(b"Subject: x\r\n\r\nhi", [cert], SmimeOptions())


def test_result_names_what_was_done(tmp_path: Path, smime_pki: SmimePki) -> None:
    source = tmp_path / "in.eml"
    source.write_bytes(sample_messages()["plain_utf8"])
    options = SmimeOptions(
        cipher="aes256-gcm",
        key_transport="rsa-oaep",
        recipient_identifier="ski",
        extra_recipients=(smime_pki.organisation.cert,),
    )
    result = encrypt_file(source, tmp_path / "out.eml", [smime_pki.alice.cert, smime_pki.bob.cert], options)
    assert (result.cipher, result.key_transport, result.recipient_identifier) == ("aes256-gcm", "rsa-oaep", "ski")
    assert result.recipients == 3 and result.smime_type == "authEnveloped-data"
    assert not result.signed and not result.headers_protected
    assert result.size == (tmp_path / "out.eml").stat().st_size


def test_options_from_config_load_the_organisation_certificate_and_signer(smime_pki: SmimePki) -> None:
    cfg = SmimeConfig(
        cipher="aes256-gcm",
        key_transport="rsa-oaep",
        recipient_identifier="ski",
        protect_headers=True,
        organisation_certificate=str(smime_pki.organisation.cert_path),
        sign_certificate=str(smime_pki.signer.cert_path),
        sign_key=str(smime_pki.signer.key_path),
        sign_chain=str(smime_pki.intermediate.cert_path),
    )
    options = SmimeOptions.from_config(cfg)
    assert options.extra_recipients == (smime_pki.organisation.cert,)
    assert options.signer is not None
    assert options.signer.certificate == smime_pki.signer.cert
    assert options.signer.chain == (smime_pki.intermediate.cert,)
    assert (options.cipher, options.key_transport, options.recipient_identifier) == ("aes256-gcm", "rsa-oaep", "ski")
    assert options.protect_headers
    assert check_smime_config(cfg) == []


def test_config_with_a_key_that_is_not_the_certificates_is_reported(smime_pki: SmimePki) -> None:
    cfg = SmimeConfig(sign_certificate=str(smime_pki.signer.cert_path), sign_key=str(smime_pki.alice.key_path))
    problems = check_smime_config(cfg)
    assert problems and "does not belong" in problems[0][1]
    half = replace(cfg, sign_key="")
    assert "go together" in check_smime_config(half)[0][1]


def test_default_config_means_the_interoperable_variant() -> None:
    options = SmimeOptions.from_config(SmimeConfig())
    assert (options.cipher, options.key_transport, options.recipient_identifier) == (
        "aes256-cbc",
        "rsa-pkcs1v15",
        "issuer-serial",
    )
    assert options.extra_recipients == () and options.signer is None and not options.protect_headers


@settings(max_examples=40, deadline=None)
@given(
    body=st.binary(max_size=3000),
    subject=st.text(alphabet="abcæøåÆØÅ ", max_size=30),
    cipher=st.sampled_from(["aes256-cbc", "aes256-gcm"]),
)
def test_any_body_survives_encryption_crlf_canonical(
    smime_pki: SmimePki, body: bytes, subject: str, cipher: str
) -> None:
    message = (
        f"From: a@kommune.example\r\nSubject: {subject}\r\nBcc: b@kommune.example\r\n".encode()
        + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        + body
    )
    out = encrypt_bytes(message, [smime_pki.alice.cert], SmimeOptions(cipher=cipher))
    inner = _decrypt(out, smime_pki.alice)
    assert inner == (
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        + re.sub(rb"\r\n|\r|\n", b"\r\n", body)
    )
    assert b"Bcc" not in out and f"Subject: {subject}\r\n".encode() in out


def test_certificate_ref_names_the_certificate_for_the_audit(smime_pki: SmimePki) -> None:
    ref = smime.certificate_ref(smime_pki.bob.cert, "ldap:oces")
    assert "CN=Bob Byret" in ref.subject and "CN=Sikkermail Test Root CA" in ref.issuer
    assert int(ref.serial, 16) == smime_pki.bob.cert.serial_number
    assert bytes.fromhex(ref.sha256) == smime_pki.bob.cert.fingerprint(hashes.SHA256())
    assert ref.source == "ldap:oces"


def test_an_encrypted_signing_key_is_reported_not_raised(smime_pki: SmimePki, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    locked = tmp_path / "locked.pem"
    locked.write_bytes(
        smime_pki.signer.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    cfg = SmimeConfig(sign_certificate=str(smime_pki.signer.cert_path), sign_key=str(locked))
    problems = check_smime_config(cfg)
    assert len(problems) == 1 and "not an unencrypted PEM private key" in problems[0][1]
    missing = SmimeConfig(organisation_certificate=str(tmp_path / "nope.pem"))
    assert "nope.pem" in check_smime_config(missing)[0][1]
