"""The default variant (AES-256-CBC, RSA PKCS#1 v1.5, issuerAndSerialNumber) read by gpgsm.

gpgsm 2.2 (Debian) is the second, unrelated CMS implementation (libksba). It
cannot read OAEP, GCM or SKI recipients, so only the default variant is checked
here; the others are read by OpenSSL in test_smime_openssl.py. gpgsm reads the
DER or the base64 body, not the MIME wrapper. CI needs `apt install gpgsm`; these
tests fail, not skip, without it.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.smime import SmimeOptions, encrypt_file
from tests.fixtures.smime_keys import (
    Identity,
    SmimePki,
    canonical_entity,
    expected_inner,
    sample_messages,
)


def _gpgsm(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["gpgsm", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, "GNUPGHOME": str(home)},
        timeout=60,
    )


@pytest.fixture(scope="session")
def gpgsm_home(tmp_path_factory: pytest.TempPathFactory, smime_pki: SmimePki) -> Iterator[Path]:
    """A throw-away GNUPGHOME holding Alice's (RSA-2048) and Bob's (RSA-3072) keys,
    imported from legacy-PBE PKCS#12 files."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    # Our test CA has no CRL distribution point and no policy: don't go looking.
    (home / "gpgsm.conf").write_text("disable-crl-checks\ndisable-policy-checks\n")
    for who in (smime_pki.alice, smime_pki.bob):
        imported = _gpgsm(home, "--import", str(who.p12_path))
        assert imported.returncode == 0, imported.stderr.decode()
        assert b"secret keys imported: 1" in imported.stderr
    yield home
    subprocess.run(
        ["gpgconf", "--kill", "gpg-agent"],
        env={**os.environ, "GNUPGHOME": str(home)},
        capture_output=True,
        timeout=30,
    )


def _cms_body(message: bytes) -> bytes:
    return message.partition(b"\r\n\r\n")[2]


def _encrypt(tmp_path: Path, original: bytes, to: Identity, options: SmimeOptions) -> bytes:
    source = tmp_path / "in.eml"
    source.write_bytes(original)
    destination = tmp_path / "out.eml"
    encrypt_file(source, destination, [to.cert], options)
    return destination.read_bytes()


@pytest.mark.parametrize("who", ["alice", "bob"])
@pytest.mark.parametrize("message", sorted(sample_messages()))
def test_gpgsm_decrypts_the_default_variant_from_der(
    tmp_path: Path, smime_pki: SmimePki, gpgsm_home: Path, message: str, who: str
) -> None:
    original = sample_messages()[message]
    out = _encrypt(tmp_path, original, getattr(smime_pki, who), SmimeOptions())
    der = tmp_path / "body.der"
    der.write_bytes(base64.b64decode(_cms_body(out)))

    result = _gpgsm(gpgsm_home, "--decrypt", str(der))

    assert result.returncode == 0, result.stderr.decode()
    assert canonical_entity(result.stdout) == expected_inner(original)


def test_gpgsm_decrypts_the_base64_body_as_sent(
    tmp_path: Path, smime_pki: SmimePki, gpgsm_home: Path
) -> None:
    original = sample_messages()["attachments"]
    out = _encrypt(
        tmp_path, original, smime_pki.alice, SmimeOptions(extra_recipients=(smime_pki.organisation.cert,))
    )
    body = tmp_path / "body.b64"
    body.write_bytes(_cms_body(out))  # 76-column CRLF lines exactly as on the wire

    result = _gpgsm(gpgsm_home, "--assume-base64", "--decrypt", str(body))

    assert result.returncode == 0, result.stderr.decode()
    assert canonical_entity(result.stdout) == expected_inner(original)


def test_gpgsm_refuses_a_message_not_encrypted_to_its_key(
    tmp_path: Path, smime_pki: SmimePki, gpgsm_home: Path
) -> None:
    out = _encrypt(tmp_path, sample_messages()["plain_utf8"], smime_pki.carol, SmimeOptions())
    der = tmp_path / "body.der"
    der.write_bytes(base64.b64decode(_cms_body(out)))

    result = _gpgsm(gpgsm_home, "--decrypt", str(der))

    assert result.returncode != 0
    assert "Blåbærgrød".encode() not in result.stdout


def test_gpgsm_reads_a_shared_cms_for_a_later_recipient_but_exits_2(
    tmp_path: Path, smime_pki: SmimePki, gpgsm_home: Path
) -> None:
    """gpgsm 2.2.40 tries the RecipientInfos in order and logs an error for each one
    before its own (no secret key; unknown certificate). It still decrypts with its own,
    writes the whole plaintext and reports DECRYPTION_OKAY, but the logged errors make
    its exit status 2. Only the first RecipientInfo's owner gets exit status 0, which
    is why the primary recipient comes first and the organisation last."""
    original = sample_messages()["attachments"]
    options = SmimeOptions(extra_recipients=(smime_pki.organisation.cert,))
    source = tmp_path / "in.eml"
    source.write_bytes(original)
    results = {}
    for order, recipients in {"bob-first": [smime_pki.bob, smime_pki.carol],
                              "bob-second": [smime_pki.carol, smime_pki.bob]}.items():
        destination = tmp_path / f"{order}.eml"
        encrypt_file(source, destination, [r.cert for r in recipients], options)
        der = tmp_path / f"{order}.der"
        der.write_bytes(base64.b64decode(_cms_body(destination.read_bytes())))
        results[order] = _gpgsm(gpgsm_home, "--status-fd", "2", "--decrypt", str(der))

    first, second = results["bob-first"], results["bob-second"]
    assert first.returncode == 0, first.stderr.decode()
    assert canonical_entity(first.stdout) == expected_inner(original)
    # Bob second (after Carol, whose key this GNUPGHOME lacks): the same plaintext, exit 2.
    assert second.returncode == 2, second.stderr.decode()
    assert b"[GNUPG:] DECRYPTION_OKAY" in second.stderr
    assert b"No secret key" in second.stderr or b"failed to find the certificate" in second.stderr
    assert canonical_entity(second.stdout) == expected_inner(original)
