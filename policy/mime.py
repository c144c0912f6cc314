"""Walk any message, however it is built or broken, into pieces of text to scan.

Every leaf ends as text with a `where` ("body", "subject", "attachment:x.pdf",
"attachment:a.zip/b.docx") or as an unscannable entry with a reason. Nothing
is skipped silently: a limit hit, a damaged part or an encrypted one is
reported, so the policy can fail closed.
"""

from __future__ import annotations

import binascii
import email
import email.errors
import re
from dataclasses import dataclass, field
from email._encoded_words import decode_b  # Message.get_payload's own base64 decoder
from email.header import Header, decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value
from typing import cast

from policy.documents import (
    Budget,
    Kind,
    Unreadable,
    container_size,
    decode_text,
    document_text,
    html_text,
    sniff,
    zip_members,
)
from policy.redact import mask_numbers
from policy.settings import ScanLimits

_BASE64_DEFECTS = (
    email.errors.InvalidBase64PaddingDefect,
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64LengthDefect,
)
_BOUNDARY_DEFECTS = (
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.CloseBoundaryNotFoundDefect,
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.MultipartInvariantViolationDefect,
)


@dataclass(frozen=True)
class TextPiece:
    where: str
    text: str


@dataclass
class Reading:
    """What the walk produced: texts to scan and the parts that could not be read."""

    message: Message
    pieces: list[TextPiece] = field(default_factory=list)
    unscannable: list[str] = field(default_factory=list)
    text_size: int = 0
    parts: int = 0


def _header_bytes(data: bytes, charset: str | None) -> str:
    # unknown-8bit / no charset: raw 8-bit header (SMTPUTF8, or a sloppy client);
    # most such headers are UTF-8, the rest cp1252
    text, _clean = decode_text(data, None if charset in (None, "unknown-8bit") else charset)
    return text


def decode_header_value(value: object) -> str:
    """An RFC 2047 header as text; a broken encoding leaves the raw text, never raises."""
    if value is None:
        return ""
    try:
        parts = decode_header(value if isinstance(value, Header) else str(value))
    except (email.errors.HeaderParseError, LookupError, UnicodeError, ValueError):
        return str(value)
    decoded: list[str] = []
    for part, charset in parts:
        if isinstance(part, str):
            if any("\udc80" <= ch <= "\udcff" for ch in part):
                part = _header_bytes(part.encode("ascii", "surrogateescape"), None)
            decoded.append(part)
        else:
            decoded.append(_header_bytes(part, charset))
    # decode_header drops the space between an encoded word and plain text
    return "".join(decoded) if len(decoded) == 1 else _join_words(parts, decoded)


def _join_words(parts: list[tuple[bytes | str, str | None]], decoded: list[str]) -> str:
    try:
        return str(make_header(parts))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return " ".join(decoded)


# Real clients nest multiparts 3-5 deep (mixed > related > alternative, signed);
# far deeper is an attack on the parser, not a message.
MAX_MULTIPART_NESTING = 40

# Text is scanned in pieces of at most this many characters, so the scratch
# copies the detectors make (folded, latin-1, digit map) stay small whatever
# the size of the message. Cut at a line break, which words and numbers
# do not cross.
PIECE_SIZE = 2 * 1024 * 1024


def _split(text: str) -> list[str]:
    if len(text) <= PIECE_SIZE:
        return [text]
    pieces: list[str] = []
    start = 0
    while start < len(text):
        stop = min(start + PIECE_SIZE, len(text))
        if stop < len(text):
            cut = text.rfind("\n", start + PIECE_SIZE // 2, stop)
            if cut == -1:
                cut = text.rfind(" ", start + PIECE_SIZE // 2, stop)
            stop = cut + 1 if cut != -1 else stop
        pieces.append(text[start:stop])
        start = stop
    return pieces


def safe_name(name: str) -> str:
    """A name or reason fit for `where` and the audit: a CPR, IBAN, card or account
    number in a file name must not reach the log through it (policy.redact)."""
    return mask_numbers(name.replace("\n", " ").replace("\r", " "))[:200]


class _Walker:
    def __init__(self, reading: Reading, limits: ScanLimits, attached_images_unscannable: bool,
                 ) -> None:
        self.reading = reading
        self.limits = limits
        self.attached_images_unscannable = attached_images_unscannable
        self.text_full = False
        self.budget = Budget(limits.max_expanded)

    def spent(self, where: str) -> bool:
        """True, with the part recorded unscannable, once the message's scan budget is gone.

        Extracting text nobody will scan would only cost time: a part not read
        is unscannable, so the policy fails closed on it.
        """
        if self.reading.text_size >= self.limits.max_text:
            self.unscannable(where, f"budget spent: not read, the text limit of "
                                    f"{self.limits.max_text} characters is reached")
            return True
        if self.budget.expanded <= 0:
            self.unscannable(where, "budget spent: not read, archives and documents of this "
                                    "message expanded to the scan limit")
            return True
        return False

    def unscannable(self, where: str, reason: str) -> None:
        # reasons name archive members and quote library errors: mask them like names
        self.reading.unscannable.append(f"{where}: {safe_name(reason)}")

    def add_text(self, where: str, text: str) -> None:
        if not text:
            return
        room = self.limits.max_text - self.reading.text_size
        if len(text) > room:
            if not self.text_full:
                self.text_full = True
                self.unscannable(where, f"text beyond the scan limit of {self.limits.max_text} characters")
            text = text[:max(room, 0)]
        if text:
            self.reading.text_size += len(text)
            for piece in _split(text):
                self.reading.pieces.append(TextPiece(where, piece))

    def count_part(self, where: str) -> bool:
        self.reading.parts += 1
        if self.reading.parts > self.limits.max_parts:
            if self.reading.parts == self.limits.max_parts + 1:
                self.unscannable(where, f"more than {self.limits.max_parts} parts")
            return False
        return True

    # -- MIME ---------------------------------------------------------------

    def message(self, msg: Message, where: str, depth: int) -> None:
        subject = msg.get("Subject")
        if subject is not None:
            self.add_text("subject" if depth == 0 else f"{where}/subject", decode_header_value(subject))
        self.part(msg, where, depth)

    def part(self, part: Message, where: str, depth: int, nesting: int = 0) -> None:
        if not self.count_part(where):
            return
        if depth > self.limits.max_depth:
            self.unscannable(where, f"nested deeper than {self.limits.max_depth} levels")
            return
        if nesting > MAX_MULTIPART_NESTING:
            self.unscannable(where, f"multiparts nested deeper than {MAX_MULTIPART_NESTING} levels")
            return
        ctype = part.get_content_type()
        if ctype == "message/rfc822" and part.is_multipart():
            label = "attached-message" if where == "body" else f"{where}/attached-message"
            for child in part.get_payload():
                if isinstance(child, Message):
                    self.message(child, label, depth + 1)
            return
        if part.is_multipart():
            if ctype == "multipart/encrypted":
                self.unscannable(where, "encrypted message part")
                return
            if any(isinstance(d, _BOUNDARY_DEFECTS) for d in part.defects):
                self.unscannable(where, "malformed MIME structure (boundary)")
            payload = part.get_payload()
            children = payload if isinstance(payload, list) else []
            for child in children:
                if isinstance(child, Message):
                    self.part(child, where, depth, nesting + 1)
            return
        if part.get_content_maintype() == "multipart":
            # declared multipart whose boundary never appears: the parser left the
            # raw text; scan it, and say the structure could not be trusted
            self.unscannable(where, "malformed MIME structure (boundary not found)")
            raw = part.get_payload()
            if isinstance(raw, str):
                self.add_text(where, raw)
            return
        try:
            self.leaf(part, where, depth)
        except Exception as exc:  # noqa: BLE001 - one hostile part must not hide the others
            self.unscannable(where, f"part cannot be read ({type(exc).__name__})")

    def leaf(self, part: Message, where: str, depth: int) -> None:
        ctype = part.get_content_type()
        name = part.get_filename() or part.get_param("name")
        if isinstance(name, tuple):  # RFC 2231 (charset, language, value)
            name = collapse_rfc2231_value(name)
        filename = decode_header_value(name or "")
        disposition = (part.get_content_disposition() or "").lower()
        is_attachment = bool(filename) or disposition == "attachment"
        label = safe_name(filename) if filename else "(unnamed)"
        if where == "body":
            here = f"attachment:{label}" if is_attachment else "body"
        else:
            here = f"{where}/{label}" if is_attachment else where
        if self.spent(here):
            return
        if filename:
            self.add_text(f"{here} (name)", filename)
        try:
            data = part.decoded_body() if isinstance(part, LeafHeaders) else \
                part.get_payload(decode=True)
        except Exception as exc:  # noqa: BLE001 - the email package on hostile input
            self.unscannable(here, f"cannot decode: {type(exc).__name__}")
            return
        if any(isinstance(d, _BASE64_DEFECTS) for d in part.defects):
            self.unscannable(here, "damaged base64 encoding")
        if not isinstance(data, bytes):
            data = b""
        cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        if cte not in ("", "7bit", "8bit", "binary", "base64", "quoted-printable",
                       "x-uuencode", "uuencode", "uue", "x-uue"):
            self.unscannable(here, f"unknown transfer encoding {cte[:40]!r}")
        if ctype == "message/rfc822" and not part.is_multipart():
            self.embedded_message(data, here, depth)
            return
        try:
            self.content(data, ctype, filename, part.get_content_charset(), here, depth,
                         inline=(not is_attachment
                                 or (bool(part.get("Content-ID")) and disposition != "attachment")))
        except Exception as exc:  # noqa: BLE001 - one hostile part must not hide the others
            self.unscannable(here, f"part cannot be read ({type(exc).__name__})")

    def embedded_message(self, data: bytes, where: str, depth: int) -> None:
        inner = email.message_from_bytes(data, policy=compat32)
        self.message(inner, where if where != "body" else "attached-message", depth + 1)

    def content(self, data: bytes, ctype: str, filename: str, charset: str | None, where: str,
                depth: int, inline: bool) -> None:
        kind = sniff(data, ctype, filename)
        if kind is Kind.TEXT:
            text, clean = decode_text(data, charset)
            self.add_text(where, text)
            if not clean and not inline:
                self.unscannable(where, "text in an unknown character set")
            return
        if kind is Kind.HTML:
            text, _clean = decode_text(data, charset)
            try:
                self.add_text(where, html_text(text))
            except Exception as exc:  # noqa: BLE001 - a parser bug must not crash the scan
                self.unscannable(where, f"HTML cannot be read: {type(exc).__name__}")
                self.add_text(where, text)
            return
        if kind is Kind.MESSAGE:
            self.embedded_message(data, where, depth)
            return
        if kind is Kind.ZIP:
            self.archive(data, where, depth)
            return
        if kind is Kind.SIGNATURE:
            return  # a detached signature carries no content of its own
        if kind is Kind.IMAGE:
            # Logos and inline pictures carry no text we could read; an attached
            # image is often a scanned document (ID card, letter), which we cannot
            # OCR, so it counts as unscannable unless the policy says otherwise.
            if not inline and self.attached_images_unscannable:
                self.unscannable(where, "image (no text to scan)")
            return
        if kind is Kind.ENCRYPTED:
            self.unscannable(where, "encrypted content")
            return
        if kind is Kind.OTHER_ARCHIVE:
            self.unscannable(where, "archive format not supported for scanning")
            return
        if kind is Kind.UNKNOWN:
            if data:
                self.unscannable(where, f"unknown binary content ({ctype})")
            return
        try:
            if kind in (Kind.DOCX, Kind.XLSX, Kind.PPTX, Kind.ODF):
                self.budget.spend(container_size(data))
            self.add_text(where, document_text(kind, data, self.limits))
        except Unreadable as exc:
            self.unscannable(where, str(exc))

    def archive(self, data: bytes, where: str, depth: int) -> None:
        if depth + 1 > self.limits.max_depth:
            self.unscannable(where, f"archive nested deeper than {self.limits.max_depth} levels")
            return
        try:
            for member in zip_members(data, self.limits, self.budget):
                inner = f"{where}/{safe_name(member.name)}"
                if not self.count_part(inner):
                    return
                self.add_text(f"{inner} (name)", member.name)
                if member.data is None:
                    self.unscannable(inner, member.reason)
                    continue
                if self.spent(inner):
                    continue
                self.content(member.data, "application/octet-stream", member.name, None, inner,
                             depth + 1, inline=False)
        except Unreadable as exc:
            self.unscannable(where, str(exc))


# The end of a header section: the first empty line. The stdlib parser ends a
# line at CRLF, CR or LF, so a CR directly before an LF is one line ending.
_LINE_END = re.compile(rb"\r\n|\r|\n")
_EMPTY_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(\r\n|\r|\n)")
# what may follow "--boundary" on a boundary line (email.feedparser.boundaryendRE)
_BOUNDARY_END = re.compile(rb"(--)?[ \t]*(?:\r\n|\r|\n|\Z)")
_UU_ENCODINGS = ("x-uuencode", "uuencode", "uue", "x-uue")
# multiparts nested deeper than this are left to the stdlib parser
_MAX_FAST_NESTING = 8


class LeafHeaders(Message):
    """A leaf parsed for its headers only; `raw_body` is its body, still transfer-encoded.

    The body is a view into the message's bytes, so the tree holds no copy of
    them; each part is copied once, when the walk decodes it.
    """

    raw_body: memoryview = memoryview(b"")

    def decoded_body(self) -> bytes:
        """What `get_payload(decode=True)` returns when the stdlib parsed the whole part.

        The same decoders and the same defects as `email.message.Message.get_payload`
        (compat32), without its round trip through str: quoted-printable with
        `binascii.a2b_qp` (what `quopri.decodestring` calls), base64 with the
        stdlib's own `decode_b` after dropping the line breaks, as
        `b"".join(payload.splitlines())` does.
        """
        cte = str(self.get("content-transfer-encoding", "")).lower()
        if cte == "quoted-printable":
            return binascii.a2b_qp(self.raw_body)
        if cte == "base64":
            value, defects = decode_b(bytes(self.raw_body).translate(None, b"\r\n"))
            for defect in defects:
                self.policy.handle_defect(self, defect)
            return cast(bytes, value)  # decode_b is untyped; it returns bytes on every branch
        return bytes(self.raw_body)


def _headers(raw: bytes, start: int, stop: int) -> tuple[LeafHeaders, int] | None:
    """The header section of raw[start:stop] parsed by the stdlib, and where the body starts.

    None when the stdlib would end the header section anywhere but at the
    first empty line (a line that is not a header, no empty line at all).
    """
    first = _LINE_END.match(raw, start, stop)
    if first is not None:
        end = first.end()  # no headers at all: the stdlib's default text/plain
    else:
        found = _EMPTY_LINE.search(raw, start, stop)
        if found is None:
            return None
        end = found.end()
    msg = email.message_from_bytes(raw[start:end], LeafHeaders, policy=compat32)
    if not isinstance(msg, LeafHeaders) or msg.get_payload() != "":
        return None  # a line that is not a header ended the header section earlier
    return msg, end


def _boundary_lines(raw: bytes, start: int, stop: int, separator: bytes,
                    ) -> list[tuple[int, int, bool]]:
    """(start, end, is the close boundary) of every line the stdlib takes as a boundary."""
    found: list[tuple[int, int, bool]] = []
    index = raw.find(separator, start, stop)
    while index != -1:
        if index == start or raw[index - 1] in b"\r\n":
            tail = _BOUNDARY_END.match(raw, index + len(separator), stop)
            if tail is not None:
                found.append((index, tail.end(), tail.group(1) is not None))
        index = raw.find(separator, index + 1, stop)
    return found


def _fast_tree(raw: bytes, start: int = 0, stop: int | None = None, nesting: int = 0,
               ) -> Message | None:
    """The tree of the message in raw[start:stop], every leaf a `LeafHeaders`; None: use the stdlib.

    `email.message_from_bytes` turns the whole message into a str (2 bytes per
    byte once one 8-bit character is in it), splits it into lines and joins
    them again: most of the time and memory of reading a large message. In the
    common shapes, a single leaf or multiparts of leaves with well-formed
    boundaries, the stdlib's payload of a leaf is a slice of the bytes, so only
    the header sections go through the stdlib parser. Anything it would read
    differently or flag as a defect (no close boundary, repeated boundary
    lines, a boundary that is not ASCII, message/* parts, uuencode) returns
    None, and the caller parses the whole message with the stdlib.
    """
    stop = len(raw) if stop is None else stop
    split = _headers(raw, start, stop)
    if split is None:
        return None
    msg, body = split
    maintype = msg.get_content_maintype()
    if maintype == "message":
        return None
    if maintype != "multipart":
        if str(msg.get("content-transfer-encoding", "")).lower() in _UU_ENCODINGS:
            return None
        if nesting:
            # RFC 2046: the line break before a boundary belongs to the boundary
            # (email.feedparser strips one from the payload: NLCRE_eol)
            if raw.endswith(b"\r\n", body, stop):
                stop -= 2
            elif raw.endswith((b"\r", b"\n"), body, stop):
                stop -= 1
        msg.raw_body = memoryview(raw)[body:stop]
        return msg
    boundary = msg.get_boundary()
    if boundary is None or nesting >= _MAX_FAST_NESTING:
        return None
    try:
        separator = b"--" + boundary.encode("ascii")
    except UnicodeEncodeError:
        return None
    lines = _boundary_lines(raw, body, stop, separator)
    if not lines or lines[0][2]:
        return None  # no start boundary, or the close boundary first
    closing = next((i for i, line in enumerate(lines) if line[2]), None)
    if closing is None:
        return None  # no close boundary
    container = Message()  # compat32, as the stdlib parser builds it
    for name, value in msg.items():
        container[name] = value
    children: list[Message | str] = []
    for (_start, after, _close), (following, _end, _next_close) in zip(
            lines[:closing], lines[1:closing + 1], strict=True):
        if following == after:
            return None  # boundary lines in a row: the stdlib skips them
        child = _fast_tree(raw, after, following, nesting + 1)
        if child is None:
            return None
        children.append(child)
    container.set_payload(children)
    return container


def read_message(raw: bytes, limits: ScanLimits, attached_images_unscannable: bool = True) -> Reading:
    """Parse and walk a message; never raises on malformed input.

    The common shapes are read from the bytes (`_fast_tree`), anything else
    through the stdlib parser. Both give the same reading
    (tests/unit/test_mime_fastpath.py).
    """
    msg = _fast_tree(raw)
    if msg is None:
        return read_message_stdlib(raw, limits, attached_images_unscannable)
    reading = Reading(msg)
    walker = _Walker(reading, limits, attached_images_unscannable)
    walker.message(msg, "body", 0)
    reading.message = _headers_only(msg)
    return reading


def read_message_stdlib(raw: bytes, limits: ScanLimits,
                        attached_images_unscannable: bool = True) -> Reading:
    """`read_message` with the whole message parsed by `email.message_from_bytes`."""
    msg = email.message_from_bytes(raw, policy=compat32)
    reading = Reading(msg)
    walker = _Walker(reading, limits, attached_images_unscannable)
    walker.message(msg, "body", 0)
    # Keep the top-level headers (markings) and let the parsed payloads go:
    # with a 50 MB message they are most of the memory in use.
    reading.message = _headers_only(msg)
    return reading


def _headers_only(msg: Message) -> Message:
    headers = Message()
    for name, value in msg.items():
        headers[name] = value
    return headers
