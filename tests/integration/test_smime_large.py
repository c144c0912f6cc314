"""A 25 MB attachment: streamed with bounded memory, and OpenSSL still reads it."""

from __future__ import annotations

import base64
import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from gateway.smime import SmimeOptions, encrypt_file
from tests.fixtures.smime_keys import SmimePki, openssl_decrypt

ATTACHMENT = 25 * 1024 * 1024


def _large_message(path: Path) -> tuple[bytes, bytes]:
    """Write a message with a 25 MB base64 attachment; return its header and body hashes."""
    head = (
        b"From: soren@kommune.example\r\nTo: alice@advokat.example\r\n"
        b"Subject: =?utf-8?q?Stor_fil_=C3=A6=C3=B8=C3=A5?=\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="big"\r\n\r\n'
    )
    body_start = (
        b"--big\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + "Se vedhæftede scanning.\r\n".encode()
        + b"--big\r\nContent-Type: application/octet-stream; name=scan.tif\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=scan.tif\r\n\r\n"
    )
    digest = hashlib.sha256(body_start)
    with path.open("wb") as f:
        f.write(head + body_start)
        written = 0
        while written < ATTACHMENT:  # bounded: ATTACHMENT / 4 MiB steps
            lines = base64.encodebytes(os.urandom(3 * 1024 * 1024)).replace(b"\n", b"\r\n")
            f.write(lines)
            digest.update(lines)
            written += len(lines)
        f.write(b"--big--\r\n")
        digest.update(b"--big--\r\n")
    return head, digest.digest()


@pytest.mark.slow
def test_25_mb_attachment_streams_in_bounded_memory_and_decrypts(tmp_path: Path, smime_pki: SmimePki) -> None:
    source = tmp_path / "big.eml"
    _head, body_sha256 = _large_message(source)
    size = source.stat().st_size
    assert size > ATTACHMENT

    tracemalloc.start()
    try:
        result = encrypt_file(source, tmp_path / "out.eml", [smime_pki.alice.cert], SmimeOptions())
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Target is below 3x the message; streaming keeps it to a few chunks.
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.1f} MiB message"
    assert result.size == (tmp_path / "out.eml").stat().st_size

    inner = openssl_decrypt(tmp_path / "out.eml", smime_pki.alice)
    inner_head, _, inner_body = inner.partition(b"\r\n\r\n")
    assert inner_head == b'Content-Type: multipart/mixed; boundary="big"'
    assert hashlib.sha256(inner_body).digest() == body_sha256
