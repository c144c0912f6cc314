"""Walk any message, however it is built or broken, into pieces of text to scan.

Every leaf ends as text with a `where` ("body", "subject", "attachment:x.pdf",
"attachment:a.zip/b.docx") or as an unscannable entry with a reason. Nothing
is skipped silently: a limit hit, a damaged part or an encrypted one is
reported, so the policy can fail closed.
"""

from __future__ import annotations

import email
import email.errors
import re
from dataclasses import dataclass, field
from email.header import Header, decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value

from policy.documents import (
    Kind,
    Unreadable,
    decode_text,
    document_text,
    html_text,
    sniff,
    zip_members,
)
from policy.settings import ScanLimits

# A CPR number in a file name must not reach the audit log through "where".
_CPR_LIKE = re.compile(r"[0-9]{6}[-\u2013 ]?[0-9]{4}")
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
    return _CPR_LIKE.sub("xxxxxx-xxxx", name.replace("\n", " ").replace("\r", " "))[:200]


class _Walker:
    def __init__(self, reading: Reading, limits: ScanLimits, attached_images_unscannable: bool,
                 ) -> None:
        self.reading = reading
        self.limits = limits
        self.attached_images_unscannable = attached_images_unscannable
        self.text_full = False

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
        if filename:
            self.add_text(f"{here} (name)", filename)
        try:
            data = part.get_payload(decode=True)
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
            self.add_text(where, document_text(kind, data, self.limits))
        except Unreadable as exc:
            self.unscannable(where, str(exc))

    def archive(self, data: bytes, where: str, depth: int) -> None:
        if depth + 1 > self.limits.max_depth:
            self.unscannable(where, f"archive nested deeper than {self.limits.max_depth} levels")
            return
        try:
            for member in zip_members(data, self.limits):
                inner = f"{where}/{safe_name(member.name)}"
                if not self.count_part(inner):
                    return
                self.add_text(f"{inner} (name)", member.name)
                if member.data is None:
                    self.unscannable(inner, member.reason)
                    continue
                self.content(member.data, "application/octet-stream", member.name, None, inner,
                             depth + 1, inline=False)
        except Unreadable as exc:
            self.unscannable(where, str(exc))


def read_message(raw: bytes, limits: ScanLimits, attached_images_unscannable: bool = True) -> Reading:
    """Parse and walk a message; never raises on malformed input."""
    msg = email.message_from_bytes(raw, policy=compat32)
    reading = Reading(msg)
    walker = _Walker(reading, limits, attached_images_unscannable)
    walker.message(msg, "body", 0)
    # Keep the top-level headers (markings) and let the parsed payloads go:
    # with a 50 MB message they are most of the memory in use.
    headers = Message()
    for name, value in msg.items():
        headers[name] = value
    reading.message = headers
    return reading
