"""Builders for the corpus: realistic messages and attachments made from text.

Nothing is fetched: PDFs are written here (a one-font text PDF, enough for a
text extractor), Office and OpenDocument files by their libraries, archives by
zipfile. `generate.py` writes the whole corpus out as .eml files.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime


def _pdf_string(line: str) -> bytes:
    data = line.encode("cp1252", errors="replace")
    return data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def make_pdf(text: str, password: str | None = None) -> bytes:
    """A one-page PDF whose text layer is `text` (Helvetica, WinAnsi: æøå work)."""
    lines = text.splitlines() or [""]
    content = b"BT /F1 11 Tf 14 TL 50 800 Td " + b" ".join(
        b"(" + _pdf_string(line) + b") Tj T*" for line in lines) + b" ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    data = out.getvalue()
    if password is None:
        return data
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-128")
    encrypted = io.BytesIO()
    writer.write(encrypted)
    return encrypted.getvalue()


def make_docx(text: str) -> bytes:
    import docx

    document = docx.Document()
    for paragraph in text.split("\n"):
        document.add_paragraph(paragraph)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_xlsx(rows: list[list[str | int]], number_formats: dict[int, str] | None = None) -> bytes:
    """A one-sheet workbook; `number_formats` maps a column (0-based) to the format its
    numbers are shown in, as Excel sets it ("000000-0000" keeps a CPR's leading zero)."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    for column, number_format in (number_formats or {}).items():
        for (cell,) in sheet.iter_rows(min_col=column + 1, max_col=column + 1):
            if isinstance(cell.value, int):
                cell.number_format = number_format
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def make_pptx(slides: list[str]) -> bytes:
    import pptx

    presentation = pptx.Presentation()
    for text in slides:
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = text.split("\n")[0]
        slide.placeholders[1].text = "\n".join(text.split("\n")[1:])
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def make_odt(text: str) -> bytes:
    from odf.opendocument import OpenDocumentText
    from odf.text import P

    document = OpenDocumentText()
    for line in text.split("\n"):
        document.text.addElement(P(text=line))
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_rtf(text: str) -> bytes:
    body = "".join(
        f"\\'{ord(ch):02x}" if 127 < ord(ch) < 256 else ch
        for ch in text.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}")
    ).replace("\n", "\\par\n")
    return ("{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0 Arial;}}\\f0\\fs22 " + body + "}").encode("ascii")


def make_zip(members: dict[str, bytes], encrypted: bool = False) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    data = bytearray(out.getvalue())
    if encrypted:
        # zipfile cannot write encrypted members; set the "encrypted" flag bit in
        # every local and central header, as a password-protected archive has it
        for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = 0
            while (index := data.find(signature, start)) != -1:
                data[index + flag_offset] |= 0x01
                start = index + 4
    return bytes(data)


def _zipcrypto_stream(password: bytes, plain: bytes) -> bytes:
    """Traditional PKWARE encryption (APPNOTE.TXT 6.1) of `plain`; stdlib zipfile decrypts it."""
    import binascii

    keys = [0x12345678, 0x23456789, 0x34567890]

    def crc_byte(crc: int, byte: int) -> int:
        return binascii.crc32(bytes([byte]), crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF

    def update(byte: int) -> None:
        keys[0] = crc_byte(keys[0], byte)
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = crc_byte(keys[2], keys[1] >> 24)

    for byte in password:
        update(byte)
    out = bytearray()
    for byte in plain:
        temp = (keys[2] | 2) & 0xFFFF
        out.append(byte ^ (((temp * (temp ^ 1)) >> 8) & 0xFF))
        update(byte)
    return bytes(out)


def make_zipcrypto_zip(members: dict[str, bytes], password: bytes) -> bytes:
    """A zip whose members are ZipCrypto-encrypted (what `zip -e` and Windows Explorer write)."""
    import binascii
    import os
    import struct
    import zlib

    out = io.BytesIO()
    central = []
    for name, data in members.items():
        crc = binascii.crc32(data)
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        compressed = packer.compress(data) + packer.flush()
        # 12-byte header: 11 random bytes and the CRC's high byte, the password check
        header = os.urandom(11) + bytes([crc >> 24])
        secret = _zipcrypto_stream(password, header + compressed)
        encoded = name.encode("utf-8")
        offset = out.tell()
        fields = (20, 0x0801, 8, 0, 0x21, crc, len(secret), len(data), len(encoded), 0)
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + encoded + secret)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, offset)
                       + encoded)
    start = out.tell()
    directory = b"".join(central)
    out.write(directory)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central),
                          len(directory), start, 0))
    return out.getvalue()


def make_aes_zip(members: dict[str, bytes], password: bytes) -> bytes:
    """A zip whose members are WinZip AES-256 encrypted (7-Zip's and WinZip's default)."""
    import pyzipper

    out = io.BytesIO()
    with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_DEFLATED,
                             encryption=pyzipper.WZ_AES) as archive:
        archive.setpassword(password)
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def make_zip_bomb(size: int = 300 * 1024 * 1024) -> bytes:
    """A small zip that claims (and would expand to) `size` bytes of zeros."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("zeros.txt", "w", force_zip64=True) as member:
            chunk = b"\0" * (1024 * 1024)
            for _ in range(size // len(chunk)):
                member.write(chunk)
    return out.getvalue()


ATTACHMENT_TYPES = {
    ".pdf": ("application", "pdf"),
    ".docx": ("application", "vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ".xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ".pptx": ("application", "vnd.openxmlformats-officedocument.presentationml.presentation"),
    ".odt": ("application", "vnd.oasis.opendocument.text"),
    ".rtf": ("application", "rtf"),
    ".zip": ("application", "zip"),
    ".csv": ("text", "csv"),
    ".txt": ("text", "plain"),
    ".png": ("image", "png"),
    ".bin": ("application", "octet-stream"),
}


@dataclass(frozen=True)
class Attachment:
    filename: str
    data: bytes


@dataclass(frozen=True)
class Case:
    """One labelled corpus message."""

    name: str
    expected: str  # "public", "confidential", "sensitive"
    subject: str
    body: str
    html: bool = False
    attachments: tuple[Attachment, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    sender: str = "sagsbehandler@kommune.example.dk"
    recipient: str = "modtager@example.dk"
    charset: str = "utf-8"
    note: str = ""


def build_message(case: Case) -> bytes:
    msg = EmailMessage()
    msg["From"] = case.sender
    msg["To"] = case.recipient
    msg["Subject"] = case.subject
    msg["Date"] = format_datetime(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = f"<{case.name}@corpus.example.dk>"
    for key, value in case.headers.items():
        msg[key] = value
    if case.html:
        msg.set_content("Se venligst HTML-udgaven.", charset=case.charset)
        msg.add_alternative(case.body, subtype="html", charset=case.charset)
    else:
        msg.set_content(case.body, charset=case.charset)
    for attachment in case.attachments:
        suffix = "." + attachment.filename.rsplit(".", 1)[-1].lower()
        maintype, subtype = ATTACHMENT_TYPES.get(suffix, ("application", "octet-stream"))
        if maintype == "text":
            msg.add_attachment(attachment.data.decode("utf-8"), subtype=subtype,
                               filename=attachment.filename)
        else:
            msg.add_attachment(attachment.data, maintype=maintype, subtype=subtype,
                               filename=attachment.filename)
    return msg.as_bytes()
