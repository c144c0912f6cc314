"""Reading any message: structure, encodings, charsets, attachments, archives, and breakage."""

from __future__ import annotations

import base64
from dataclasses import replace
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.classify import classify_message
from policy.mime import read_message
from policy.model import Level
from policy.policyfile import Policy
from policy.settings import ScanLimits
from tests.corpus.build import (
    make_docx,
    make_pdf,
    make_zip,
    make_zip_bomb,
)

POLICY = Policy.builtin()
LIMITS = ScanLimits()


def texts(raw: bytes, limits: ScanLimits = LIMITS) -> dict[str, str]:
    reading = read_message(raw, limits)
    return {piece.where: piece.text for piece in reading.pieces}


def with_attachment(name: str, data: bytes, maintype: str = "application",
                    subtype: str = "octet-stream", body: str = "Se bilag.") -> bytes:
    msg = EmailMessage()
    msg["Subject"] = "Bilag"
    msg.set_content(body)
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def test_encoded_subject_and_latin1_quoted_printable_body() -> None:
    raw = (b"Subject: =?iso-8859-1?q?Sygemelding_for_S=F8ren?=\r\n"
           b"Content-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
           b"S=F8ren er sygemeldt, diagnosen f=F8lger.\r\n")
    found = texts(raw)
    assert found["subject"] == "Sygemelding for Søren"
    assert "Søren er sygemeldt, diagnosen følger." in found["body"]
    assert classify_message(raw, POLICY).level is Level.SENSITIVE


def test_utf8_body_mislabelled_as_us_ascii_is_still_read() -> None:
    raw = ("Content-Type: text/plain; charset=us-ascii\n\nFølsom: sygemeldt og diagnosen er "
           "depression").encode()
    assert "Følsom" in texts(raw)["body"]


def test_unknown_charset_falls_back_without_error() -> None:
    raw = b"Content-Type: text/plain; charset=x-klingon\n\nCPR 070761-4285\n"
    assert classify_message(raw, POLICY).level is Level.CONFIDENTIAL


def test_html_is_read_as_text() -> None:
    msg = EmailMessage()
    msg.set_content("<p>Dit CPR-nr.: <b>070761-4285</b></p>", subtype="html")
    assert "070761-4285" in texts(msg.as_bytes())["body"]
    assert "<b>" not in texts(msg.as_bytes())["body"]


def test_attachments_of_every_kind_are_read() -> None:
    raw = with_attachment("journal.pdf", make_pdf("Diagnose: depression"), "application", "pdf")
    assert "Diagnose: depression" in texts(raw)["attachment:journal.pdf"]
    raw = with_attachment("notat.docx", make_docx("Notat om sigtelse"))
    assert "Notat om sigtelse" in texts(raw)["attachment:notat.docx"]


def test_attachment_type_is_sniffed_not_trusted() -> None:
    raw = with_attachment("scan0001.dat", make_pdf("CPR 070761-4285"), "application", "octet-stream")
    assert classify_message(raw, POLICY).level is Level.CONFIDENTIAL


def test_nested_message_rfc822_is_walked() -> None:
    inner = EmailMessage()
    inner["Subject"] = "Videresendt: straffeattest"
    inner.set_content("Vedhæftet straffeattest for ansøgeren.")
    outer = EmailMessage()
    outer["Subject"] = "Fwd"
    outer.set_content("Se nedenfor.")
    outer.add_attachment(inner)
    result = classify_message(outer.as_bytes(), POLICY)
    assert result.level is Level.SENSITIVE
    assert any("attached-message" in w for e in result.evidence for w in e.where)


def test_zip_is_read_recursively() -> None:
    archive = make_zip({"a/b.zip": make_zip({"c.txt": b"cpr 070761-4285"})})
    result = classify_message(with_attachment("bilag.zip", archive, "application", "zip"), POLICY)
    cpr = [e for e in result.evidence if e.detector == "cpr"]
    assert cpr and cpr[0].where == ("attachment:bilag.zip/a/b.zip/c.txt",)


def test_zip_nested_beyond_the_depth_limit_is_unscannable() -> None:
    archive = b"innermost"
    for _ in range(5):
        archive = make_zip({"next.zip": archive})
    limits = replace(LIMITS, max_depth=2)
    reading = read_message(with_attachment("deep.zip", archive, "application", "zip"), limits)
    assert any("deeper than 2" in r for r in reading.unscannable)


def test_zip_bomb_is_refused_and_counts_as_unscannable() -> None:
    bomb = make_zip_bomb(64 * 1024 * 1024)
    result = classify_message(with_attachment("bomb.zip", bomb, "application", "zip"), POLICY)
    assert result.level is Level.CONFIDENTIAL
    assert any("zip bomb" in r for r in result.unscannable)


def test_archive_with_too_many_members_is_unscannable() -> None:
    archive = make_zip({f"f{i}.txt": b"x" for i in range(30)})
    reading = read_message(with_attachment("many.zip", archive, "application", "zip"),
                           replace(LIMITS, max_archive_members=10))
    assert any("30 members" in r for r in reading.unscannable)


def test_password_protected_zip_and_pdf_are_unscannable() -> None:
    enc_zip = make_zip({"sag.txt": b"x"}, encrypted=True)
    result = classify_message(with_attachment("a.zip", enc_zip, "application", "zip"), POLICY)
    assert result.level is Level.CONFIDENTIAL and "encrypted archive" in result.unscannable[0]
    enc_pdf = make_pdf("hemmelig", password="1234")
    result = classify_message(with_attachment("a.pdf", enc_pdf, "application", "pdf"), POLICY)
    assert result.level is Level.CONFIDENTIAL and "encrypted PDF" in result.unscannable[0]


def test_damaged_pdf_and_docx_are_unscannable_not_crashes() -> None:
    for name, data in (("x.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog"), ("x.docx", b"PK\x03\x04junk")):
        result = classify_message(with_attachment(name, data), POLICY)
        assert result.level is Level.CONFIDENTIAL, name
        assert result.unscannable, name


def test_broken_boundary_is_reported_and_text_still_scanned() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=\"XYZ\"\n\n"
           b"--ABC\nContent-Type: text/plain\n\nCPR 070761-4285\n--ABC--\n")
    result = classify_message(raw, POLICY)
    assert result.level is Level.CONFIDENTIAL
    assert any("boundary" in r for r in result.unscannable)
    assert any(e.detector == "cpr" for e in result.evidence)


def test_missing_close_boundary_still_reads_the_parts() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\n"
           b"diagnosen er depression\n--B\nContent-Type: text/plain\n\nmere tekst\n")
    result = classify_message(raw, POLICY)
    assert result.level is Level.SENSITIVE


def test_bad_base64_is_reported() -> None:
    raw = (b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
           + base64.b64encode(b"CPR 070761-4285")[:-3] + b"!!*\n")
    result = classify_message(raw, POLICY)
    assert result.level is Level.CONFIDENTIAL
    assert any("base64" in r for r in result.unscannable)


def test_unknown_binary_and_attached_image_are_unscannable_inline_image_is_not() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    assert read_message(with_attachment("x.bin", bytes(range(256))), LIMITS).unscannable
    assert read_message(with_attachment("scan.png", png, "image", "png"), LIMITS).unscannable
    msg = EmailMessage()
    msg.set_content("<p>logo</p><img src='cid:logo'>", subtype="html")
    msg.add_related(png, maintype="image", subtype="png", cid="<logo>")
    assert read_message(msg.as_bytes(), LIMITS).unscannable == []


def test_encrypted_smime_part_is_unscannable() -> None:
    raw = (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n"
           b"Content-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEHA6CAMIACAQAxggE=\n")
    assert classify_message(raw, POLICY).level is Level.CONFIDENTIAL


def test_text_limit_makes_the_rest_unscannable() -> None:
    raw = b"Content-Type: text/plain\n\n" + b"a" * 5000
    reading = read_message(raw, replace(LIMITS, max_text=1000))
    assert reading.text_size == 1000
    assert any("scan limit" in r for r in reading.unscannable)


def test_part_count_limit() -> None:
    msg = EmailMessage()
    msg.set_content("x")
    for i in range(20):
        msg.add_attachment(f"t{i}".encode(), maintype="text", subtype="plain", filename=f"{i}.txt")
    reading = read_message(msg.as_bytes(), replace(LIMITS, max_parts=5))
    assert any("more than 5 parts" in r for r in reading.unscannable)


def test_deeply_nested_multiparts_end_classified() -> None:
    depth = 200
    raw = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i)
                   for i in range(depth))
    raw += b"Content-Type: text/plain\n\nhej\n"
    result = classify_message(raw, POLICY)
    assert result.level is Level.CONFIDENTIAL  # nested deeper than the limit: unscannable


def test_cpr_in_a_file_name_is_found_and_masked_in_where() -> None:
    result = classify_message(with_attachment("070761-4285.pdf", make_pdf("bilag")), POLICY)
    assert result.level is Level.CONFIDENTIAL
    assert all("4285" not in w for e in result.evidence for w in e.where)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_end_classified(raw: bytes) -> None:
    result = classify_message(raw, POLICY)
    assert result.level in Level


_PIECES = [b"Content-Type: multipart/mixed; boundary=\"q\"\n", b"--q\n", b"--q--\n",
           b"Content-Transfer-Encoding: base64\n", b"Content-Type: application/zip\n",
           b"Content-Type: message/rfc822\n", b"Content-Type: text/html; charset=utf-16\n",
           b"\n", b"PK\x03\x04", b"%PDF-1.7\n", b"=?utf-8?b?w6bDuMOl?=", b"cpr 070761-4285\n",
           b"Subject: [fortrolig]\n", b"\xff\xfe\x00", b"====\n"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_mime_shaped_garbage_ends_classified(pieces: list[bytes]) -> None:
    result = classify_message(b"".join(pieces), POLICY)
    assert result.level in Level


def test_raw_utf8_subject_is_decoded() -> None:
    raw = "Subject: Sygemelding for Søren\n\nhej".encode()
    assert texts(raw)["subject"] == "Sygemelding for Søren"
    latin = "Subject: Sygemelding for Søren\n\nhej".encode("cp1252")
    assert texts(latin)["subject"] == "Sygemelding for Søren"


def test_unscannable_reasons_never_show_a_cpr_number() -> None:
    archive = make_zip({"070761-4285 journal.txt": b"x"}, encrypted=True)
    result = classify_message(with_attachment("a.zip", archive, "application", "zip"), POLICY)
    assert result.unscannable and all("4285" not in r for r in result.unscannable)
    assert all("4285" not in s for e in result.evidence for s in e.samples + e.where)


def test_readable_members_next_to_an_encrypted_one_are_still_scanned() -> None:
    archive = bytearray(make_zip({"a.txt": b"x", "b.txt": b"Diagnosen er depression, sygemeldt"}))
    first = archive.find(b"PK\x03\x04")
    archive[first + 6] |= 0x01  # only the first member's local header...
    central = archive.find(b"PK\x01\x02")
    archive[central + 8] |= 0x01  # ...and its central entry are marked encrypted
    result = classify_message(with_attachment("mixed.zip", bytes(archive), "application", "zip"),
                              POLICY)
    assert result.level is Level.SENSITIVE
    assert result.unscannable == ("attachment:mixed.zip/a.txt: encrypted archive member",)


def test_a_part_that_breaks_the_reader_does_not_hide_the_others(monkeypatch) -> None:
    import policy.mime as mime

    original = mime._Walker.content

    def content(self, data, ctype, filename, *args, **kwargs):
        if filename == "evil.bin":
            raise ValueError("parser bug")
        return original(self, data, ctype, filename, *args, **kwargs)

    monkeypatch.setattr(mime._Walker, "content", content)
    raw = with_attachment("evil.bin", b"\x00\x01", body="Straffeattest og betinget dom vedlagt.")
    result = classify_message(raw, POLICY)
    assert result.level is Level.SENSITIVE
    assert result.unscannable == ("attachment:evil.bin: part cannot be read (ValueError)",)


def test_well_formed_but_absurdly_nested_multiparts_are_unscannable() -> None:
    depth = 60
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i)
                    for i in range(depth))
    tail = b"".join(b"\n--b%d--\n" % i for i in reversed(range(depth)))
    raw = head + b"Content-Type: text/plain\n\nhej\n" + tail
    reading = read_message(raw, LIMITS)
    assert any("multiparts nested deeper than 40" in r for r in reading.unscannable)
    assert classify_message(raw, POLICY).level is Level.CONFIDENTIAL
