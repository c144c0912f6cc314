"""Text out of attachments: PDF, Office Open XML, OpenDocument, RTF, HTML, CSV, zip.

Each format is read by its maintained library. Whatever cannot be read comes
back as an `Unreadable` with a reason a compliance officer understands
("encrypted PDF", "zip bomb suspected") — the policy decides what it means.
Container formats (zip, and the zip inside every .docx/.xlsx/.pptx/.odt) are
checked against the limits before any library decompresses them.
"""

from __future__ import annotations

import enum
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from policy.settings import ScanLimits


class Kind(enum.StrEnum):
    TEXT = "text"
    HTML = "html"
    PDF = "pdf"
    DOCX = "docx"
    XLSX = "xlsx"
    PPTX = "pptx"
    ODF = "odf"
    RTF = "rtf"
    ZIP = "zip"
    MESSAGE = "message"
    IMAGE = "image"
    SIGNATURE = "signature"  # detached S/MIME or PGP signature: no content
    ENCRYPTED = "encrypted"
    OTHER_ARCHIVE = "other-archive"
    UNKNOWN = "unknown"


class Unreadable(Exception):
    """This content cannot be scanned; `str()` is the reason."""


_TEXT_EXTENSIONS = (".txt", ".csv", ".tsv", ".md", ".xml", ".json", ".ics", ".vcf", ".log")
_ARCHIVE_EXTENSIONS = (".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".cab", ".arj")
_ARCHIVE_MAGIC = (b"7z\xbc\xaf\x27\x1c", b"Rar!", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"MSCF")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .doc/.xls, also encrypted OOXML


def sniff(data: bytes, content_type: str, filename: str) -> Kind:
    """The format, from the bytes first: senders' content types are often wrong."""
    name = filename.lower()
    head = data[:1024]
    if head.lstrip().startswith(b"%PDF") or b"%PDF-" in head:
        return Kind.PDF
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return _zip_kind(data)
    if data.startswith(b"{\\rtf"):
        return Kind.RTF
    if data.startswith(_OLE_MAGIC):
        # Password-protected .docx/.xlsx are OLE containers too ("EncryptedPackage").
        return Kind.ENCRYPTED if b"E\x00n\x00c\x00r\x00y\x00p\x00t\x00e\x00d\x00P" in data[:65536] \
            else Kind.UNKNOWN
    if data.startswith(_ARCHIVE_MAGIC) or name.endswith(_ARCHIVE_EXTENSIONS):
        return Kind.OTHER_ARCHIVE
    if content_type in ("application/pkcs7-signature", "application/x-pkcs7-signature",
                        "application/pgp-signature"):
        return Kind.SIGNATURE
    if content_type in ("application/pkcs7-mime", "application/x-pkcs7-mime",
                        "application/pgp-encrypted") or name.endswith((".p7m", ".gpg", ".pgp")):
        return Kind.ENCRYPTED
    if content_type == "message/rfc822" or name.endswith(".eml"):
        return Kind.MESSAGE
    if content_type == "text/html" or name.endswith((".html", ".htm")):
        return Kind.HTML
    if content_type.startswith("image/") or head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8")):
        return Kind.IMAGE
    if content_type.startswith("text/") or name.endswith(_TEXT_EXTENSIONS):
        return Kind.TEXT
    if _looks_like_text(head):
        return Kind.TEXT
    return Kind.UNKNOWN


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the end of the sample is still text
        return exc.start >= len(head) - 3


def _zip_kind(data: bytes) -> Kind:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            if "[Content_Types].xml" in names:
                if "word/document.xml" in names:
                    return Kind.DOCX
                if "xl/workbook.xml" in names:
                    return Kind.XLSX
                if "ppt/presentation.xml" in names:
                    return Kind.PPTX
            if "mimetype" in names and "content.xml" in names:
                return Kind.ODF
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        pass
    return Kind.ZIP


def decode_text(data: bytes, charset: str | None = None) -> tuple[str, bool]:
    """Text from bytes and whether it decoded cleanly.

    The declared charset is tried first, then UTF-8 (the usual mislabel is UTF-8
    sent as us-ascii or latin-1), then cp1252, which decodes every byte.
    """
    tried: list[str] = []
    for codec in (charset, "utf-8"):
        if not codec or codec in tried:
            continue
        tried.append(codec)
        try:
            return data.decode(codec), True
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", errors="replace"), False


def html_text(markup: str) -> str:
    from bs4 import BeautifulSoup

    return BeautifulSoup(markup, "lxml").get_text(" ")


@dataclass(frozen=True)
class Member:
    name: str
    data: bytes | None  # None: cannot be read, see `reason`
    reason: str = ""


@dataclass
class Budget:
    """What is left of one message's expansion budget (ScanLimits.max_expanded)."""

    expanded: int

    def spend(self, size: int) -> None:
        """Take `size` uncompressed bytes or raise Unreadable: nothing is read past the budget."""
        if size > self.expanded:
            self.expanded = 0
            raise Unreadable("budget spent: archives and documents of this message expand "
                             "beyond the scan limit")
        self.expanded -= size


def container_size(data: bytes) -> int:
    """Uncompressed size of a zip container as its directory declares it (0 if unreadable)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return 0


def check_zip(archive: zipfile.ZipFile, limits: ScanLimits, compressed_size: int) -> None:
    """Refuse archives that would cost more to open than the limits allow (zip bombs)."""
    infos = archive.infolist()
    if len(infos) > limits.max_archive_members:
        raise Unreadable(f"archive has {len(infos)} members (limit {limits.max_archive_members})")
    total = 0
    for info in infos:
        total += info.file_size
        if info.file_size > max(info.compress_size, 1) * limits.max_expansion_ratio \
                and info.file_size > 1024 * 1024:
            raise Unreadable(f"zip bomb suspected: {info.filename!r} expands "
                             f"{info.file_size // max(info.compress_size, 1)}x")
    if total > limits.max_archive_total:
        raise Unreadable(f"archive expands to {total} bytes (limit {limits.max_archive_total})")
    if total > max(compressed_size, 1) * limits.max_expansion_ratio and total > 1024 * 1024:
        raise Unreadable(f"zip bomb suspected: expands {total // max(compressed_size, 1)}x")


def zip_members(data: bytes, limits: ScanLimits, budget: Budget | None = None) -> Iterator[Member]:
    """The files of a zip archive, each read with a bound on what it may expand to.

    With a `budget`, a member that would take more than is left is not read:
    it and every member after it come back unreadable ("budget spent").
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise Unreadable(f"damaged zip archive: {exc}")
    with archive:
        check_zip(archive, limits, len(data))
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                # the other members are still read: they may raise the level further
                yield Member(info.filename, None, "encrypted archive member")
                continue
            if budget is not None:
                try:
                    budget.spend(info.file_size)
                except Unreadable as exc:
                    yield Member(info.filename, None, str(exc))
                    continue
            try:
                with archive.open(info) as handle:
                    # the header's size may lie: never read more than it promised
                    content = handle.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
                    RuntimeError) as exc:
                raise Unreadable(f"cannot read archive member {info.filename!r}: {exc}")
            if len(content) > info.file_size:
                raise Unreadable(f"zip bomb suspected: {info.filename!r} larger than declared")
            yield Member(info.filename, content)


def _guard_container(data: bytes, limits: ScanLimits) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_zip(archive, limits, len(data))
            if any(info.flag_bits & 0x1 for info in archive.infolist()):
                raise Unreadable("encrypted document")
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise Unreadable(f"damaged document container: {exc}")


def pdf_text(data: bytes, limits: ScanLimits) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # An owner password alone (printing/copy restrictions) opens with "".
            try:
                opened = reader.decrypt("")
            except (PyPdfError, NotImplementedError, ValueError) as exc:
                raise Unreadable(f"encrypted PDF: {exc}")
            if not opened:
                raise Unreadable("encrypted PDF (password required)")
        pages = len(reader.pages)
        if pages > limits.max_document_pages:
            raise Unreadable(f"PDF has {pages} pages (limit {limits.max_document_pages})")
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except Unreadable:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure is "unscannable", never a crash
        raise Unreadable(f"PDF cannot be read: {type(exc).__name__}: {exc}")
    if pages and not text.strip():
        raise Unreadable("PDF has no text layer (scanned image?)")
    return text


def docx_text(data: bytes, limits: ScanLimits) -> str:
    import docx

    _guard_container(data, limits)
    document = docx.Document(io.BytesIO(data))
    parts: list[str] = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.extend(cell.text for cell in row.cells)
    for section in document.sections:
        for area in (section.header, section.footer):
            parts.extend(p.text for p in area.paragraphs)
    return "\n".join(parts)


_FORMAT_BRACKETS = re.compile(r"\[[^\]]*\]")  # [Red], [<=9999999], [$-406]
_FORMAT_LITERALS = re.compile(r'"([^"]*)"|\\(.)')  # "-" and \- are literal text
_FORMAT_CODES = set("yYmMdDhHsSeE%@?,*_")  # dates, times, exponents, text: not a digit mask


def integer_as_displayed(value: int, number_format: str | None) -> str | None:
    """An integer as Excel shows it under a digit-mask format ("0000000000", "000000-0000").

    Excel stores the CPR number 0101901234 as the number 101901234 and shows the
    leading zero only through the cell's format; str() would give nine digits
    and the number would be missed. None when the format is no plain digit mask.
    """
    if not number_format or number_format.lower() == "general":
        return None
    section = _FORMAT_BRACKETS.sub("", number_format.split(";", 1)[0])
    parts: list[tuple[bool, str]] = []  # (is a digit placeholder, literal text)
    position = 0
    for match in _FORMAT_LITERALS.finditer(section):
        parts.extend((ch in "0#", ch) for ch in section[position:match.start()])
        parts.append((False, match.group(1) if match.group(1) is not None else match.group(2)))
        position = match.end()
    parts.extend((ch in "0#", ch) for ch in section[position:])
    placeholders = [ch for is_digit, ch in parts if is_digit]
    if not placeholders or any(ch in _FORMAT_CODES or ch == "." for is_digit, ch in parts
                               if not is_digit and len(ch) == 1):
        return None
    digits = str(abs(value)).zfill(placeholders.count("0"))
    out: list[str] = []
    remaining = len(placeholders)
    for is_digit, ch in reversed(parts):
        if not is_digit:
            out.append(ch)
            continue
        remaining -= 1
        if remaining == 0:  # the leftmost placeholder takes every digit still left
            out.append(digits)
            digits = ""
        else:
            out.append(digits[-1:])
            digits = digits[:-1]
    return ("-" if value < 0 else "") + "".join(reversed(out))


def _cell_text(value: object, number_format: str | None, cpr_column: bool) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        shown = integer_as_displayed(value, number_format)
        if shown is not None:
            return shown
        if cpr_column and 100_000_000 <= value <= 999_999_999:
            # a CPR column in the General format: Excel dropped the leading zero
            return f"{value:010d}"
    return str(value)


_CPR_HEADER = re.compile(r"cpr|person\s*n|fødselsn|social security", re.IGNORECASE)


def xlsx_text(data: bytes, limits: ScanLimits) -> str:
    """The sheets' text, each cell after its column header when the first row is one.

    "Varenr: 1012881234; Pris: 1995" keeps a header's meaning next to each
    value, as the reader of the sheet sees it: the CPR detector's context and
    negative words label the number the way they would in a sentence.
    """
    import openpyxl

    _guard_container(data, limits)
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    parts: list[str] = []
    budget = limits.max_text
    try:
        for sheet in book.worksheets:
            parts.append(str(sheet.title))
            header: list[str] | None = None
            for row in sheet.iter_rows():
                cells = [(c.value, getattr(c, "number_format", None)) for c in row]
                if header is None and any(v is not None for v, _f in cells):
                    if all(isinstance(v, str) or v is None for v, _f in cells):
                        header = [str(v).strip() if v is not None else "" for v, _f in cells]
                        line = " ".join(h for h in header if h)
                    else:
                        header = []
                        line = " ".join(_cell_text(v, f, False) for v, f in cells if v is not None)
                else:
                    fields: list[str] = []
                    for index, (value, number_format) in enumerate(cells):
                        if value is None:
                            continue
                        name = header[index] if header and index < len(header) else ""
                        text = _cell_text(value, number_format, bool(_CPR_HEADER.search(name)))
                        fields.append(f"{name}: {text}" if name else text)
                    line = "; ".join(fields)
                budget -= len(line) + 1
                if budget < 0:
                    raise Unreadable("spreadsheet text exceeds the scan limit")
                parts.append(line)
    finally:
        book.close()
    return "\n".join(parts)


def pptx_text(data: bytes, limits: ScanLimits) -> str:
    import pptx

    _guard_container(data, limits)
    presentation = pptx.Presentation(io.BytesIO(data))
    if len(presentation.slides) > limits.max_document_pages:
        raise Unreadable(f"presentation has too many slides (limit {limits.max_document_pages})")
    parts: list[str] = []
    for slide in presentation.slides:
        for shape in slide.shapes:
            if shape.has_text_frame:
                parts.append(shape.text_frame.text)
            if getattr(shape, "has_table", False) and shape.has_table:
                for row in shape.table.rows:
                    parts.extend(cell.text for cell in row.cells)
        if slide.has_notes_slide:
            parts.append(slide.notes_slide.notes_text_frame.text)
    return "\n".join(parts)


def odf_text(data: bytes, limits: ScanLimits) -> str:
    from odf import teletype
    from odf import text as odftext
    from odf.opendocument import load

    _guard_container(data, limits)
    document = load(io.BytesIO(data))
    paragraphs = document.getElementsByType(odftext.P) + document.getElementsByType(odftext.H)
    return "\n".join(teletype.extractText(p) for p in paragraphs)


def rtf_text(data: bytes) -> str:
    from striprtf.striprtf import rtf_to_text

    raw, _clean = decode_text(data, "cp1252")
    return str(rtf_to_text(raw, errors="replace"))  # type: ignore[no-untyped-call]


def document_text(kind: Kind, data: bytes, limits: ScanLimits) -> str:
    """Text of one document of a known kind; raises Unreadable with the reason."""
    readers = {Kind.PDF: pdf_text, Kind.DOCX: docx_text, Kind.XLSX: xlsx_text,
               Kind.PPTX: pptx_text, Kind.ODF: odf_text}
    try:
        if kind in readers:
            return readers[kind](data, limits)
        if kind is Kind.RTF:
            return rtf_text(data)
    except Unreadable:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken document is unscannable, never a crash
        raise Unreadable(f"{kind} cannot be read: {type(exc).__name__}: {str(exc)[:200]}")
    raise Unreadable(f"no text reader for {kind}")
