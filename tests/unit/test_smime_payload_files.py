"""The S/MIME payload files in a message's spool folder: durable before the journal
names them, numbered so a retry never replaces a waiting one, abandoned cleanly."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import gateway.smime as smime
from gateway.pipeline import next_payload_number, read_header_block
from gateway.smime import SmimeError, SmimeOptions, encrypt_file_durably
from tests.fixtures.smime_keys import SmimePki, openssl_decrypt, sample_messages


def test_payload_is_fsynced_then_renamed_then_the_folder_fsynced(
    tmp_path: Path, smime_pki: SmimePki, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "message"
    source.write_bytes(sample_messages()["plain_utf8"])
    destination = tmp_path / "smime-1.eml"
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        calls.append(("replace", f"{Path(src).name}->{Path(dst).name}"))
        real_replace(src, dst)

    monkeypatch.setattr(smime.os, "fsync", fsync)
    monkeypatch.setattr(smime.os, "replace", replace)
    encrypt_file_durably(source, destination, [smime_pki.alice.cert], SmimeOptions())

    assert calls == [
        ("fsync", str(tmp_path / ".smime-1.eml.tmp")),
        ("replace", ".smime-1.eml.tmp->smime-1.eml"),
        ("fsync", str(tmp_path)),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["message", "smime-1.eml"]
    assert "Blåbærgrød" in openssl_decrypt(destination, smime_pki.alice).decode()


def test_an_abandoned_encryption_leaves_no_file(tmp_path: Path, smime_pki: SmimePki) -> None:
    source = tmp_path / "message"
    source.write_bytes(sample_messages()["attachments"])
    abort = threading.Event()
    abort.set()
    with pytest.raises(SmimeError, match="abandoned"):
        encrypt_file_durably(source, tmp_path / "smime-1.eml", [smime_pki.alice.cert], SmimeOptions(), abort)
    assert [p.name for p in tmp_path.iterdir()] == ["message"]


def test_a_retry_numbers_its_payload_after_those_already_waiting(tmp_path: Path) -> None:
    assert next_payload_number(tmp_path) == 1
    for name in ("message", "smime-1.eml", "smime-3.eml", "journal", "smime-x.eml"):
        (tmp_path / name).write_bytes(b"")
    assert next_payload_number(tmp_path) == 4
    (tmp_path / ".smime-7.eml.tmp").write_bytes(b"")  # an abandoned one: its name is not reused either
    assert next_payload_number(tmp_path) == 8


def test_headers_come_from_the_header_block_alone(tmp_path: Path) -> None:
    path = tmp_path / "message"
    with path.open("wb") as f:
        f.write(b"From: a@kommune.example\r\nTo: b@borger.test\r\nCc: c@borger.test\r\n\r\n")
        f.write(b"To: not-a-header@borger.test\r\n" + b"x" * (4 << 20))
    headers = read_header_block(path)
    assert headers.get_all("To") == ["b@borger.test"] and headers["Cc"] == "c@borger.test"
    assert headers.get_payload() == ""  # the body was not read into the parse
    # A separator that falls across two reads is still found.
    split = tmp_path / "split"
    split.write_bytes(b"Subject: " + b"y" * (64 * 1024 - 12) + b"\r\n\r\nbody To: z@x\r\n")
    assert read_header_block(split)["Subject"].endswith("y") and read_header_block(split).get_payload() == ""
