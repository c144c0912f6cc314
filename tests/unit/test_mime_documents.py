"""Attachment formats: each read by its library; what cannot be read says why."""

from __future__ import annotations

from dataclasses import replace

import pytest

import policy.classify as classify_module
from policy.classify import classify_message
from policy.documents import Kind, Unreadable, decode_text, document_text, sniff, zip_members
from policy.model import Level
from policy.policyfile import Policy
from policy.settings import ScanLimits
from tests.corpus.build import (
    make_docx,
    make_odt,
    make_pdf,
    make_pptx,
    make_rtf,
    make_xlsx,
    make_zip,
)

LIMITS = ScanLimits()


@pytest.mark.parametrize(("kind", "data"), [
    (Kind.PDF, make_pdf("Sigtelse for tyveri, æøå")),
    (Kind.DOCX, make_docx("Sigtelse for tyveri, æøå")),
    (Kind.XLSX, make_xlsx([["Sigtelse for tyveri, æøå"]])),
    (Kind.PPTX, make_pptx(["Titel\nSigtelse for tyveri, æøå"])),
    (Kind.ODF, make_odt("Sigtelse for tyveri, æøå")),
    (Kind.RTF, make_rtf("Sigtelse for tyveri, æøå")),
])
def test_each_format_is_sniffed_and_read(kind: Kind, data: bytes) -> None:
    assert sniff(data, "application/octet-stream", "noname") is kind
    assert "Sigtelse for tyveri, æøå" in document_text(kind, data, LIMITS)


def test_sniffing_ignores_a_lying_content_type() -> None:
    assert sniff(make_pdf("x"), "text/plain", "notes.txt") is Kind.PDF
    assert sniff(b"\x89PNG\r\n\x1a\n....", "application/pdf", "x.pdf") is Kind.IMAGE
    assert sniff(b"Rar!\x1a\x07\x00", "application/octet-stream", "x") is Kind.OTHER_ARCHIVE
    assert sniff("Hej æøå".encode(), "application/octet-stream", "x") is Kind.TEXT


def test_pdf_without_text_layer_is_unscannable() -> None:
    with pytest.raises(Unreadable, match="no text layer"):
        document_text(Kind.PDF, make_pdf(""), LIMITS)


def test_pdf_over_the_page_limit_is_unscannable() -> None:
    with pytest.raises(Unreadable, match="pages"):
        document_text(Kind.PDF, make_pdf("x"), replace(LIMITS, max_document_pages=0))


def test_zip_member_larger_than_declared_is_a_bomb() -> None:
    archive = bytearray(make_zip({"a.txt": b"A" * 5000}))
    # shrink the declared uncompressed size in the central directory
    index = archive.find(b"PK\x01\x02")
    archive[index + 24:index + 28] = (10).to_bytes(4, "little")
    with pytest.raises(Unreadable):
        list(zip_members(bytes(archive), LIMITS))


def test_decode_text_falls_back_from_a_wrong_charset() -> None:
    assert decode_text("æøå".encode(), "us-ascii") == ("æøå", True)
    assert decode_text("æøå".encode("cp1252"), "utf-8") == ("æøå", False)
    assert decode_text(b"abc", "no-such-charset") == ("abc", True)


def test_an_internal_error_still_ends_classified_with_markings(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RecursionError("deep")

    monkeypatch.setattr(classify_module, "read_message", explode)
    policy = replace(Policy.builtin(), markings=replace(
        Policy.builtin().markings, subject_tags={"[følsom]": Level.SENSITIVE}))
    raw = "Subject: [følsom] x\n\nhej".encode()
    result = classify_message(raw, policy)
    assert result.level is Level.SENSITIVE
    assert not result.scanned
    assert result.unscannable == ("message: cannot be scanned (RecursionError)",)
    plain = classify_message(b"Subject: x\n\nhej", Policy.builtin())
    assert plain.level is Level.CONFIDENTIAL


def test_really_encrypted_zips_are_unscannable_members() -> None:
    from policy.documents import zip_members
    from policy.settings import ScanLimits
    from tests.corpus.build import make_aes_zip, make_zipcrypto_zip

    secret = b"CPR 010190-1234, diagnose"
    for archive in (make_zipcrypto_zip({"a.txt": secret}, b"pw"), make_aes_zip({"a.txt": secret}, b"pw")):
        members = list(zip_members(archive, ScanLimits()))
        assert [(m.name, m.data, m.reason) for m in members] == [("a.txt", None, "encrypted archive member")]
        assert secret not in archive  # really encrypted, not only flagged
