"""S/MIME encryption of a complete message (RFC 8551), streamed from file to file.

The pipeline calls `encrypt_file` in an executor thread with the spooled message
and the certificates certdir chose. The output is a complete RFC 5322 message:
the outer header fields of the original (minus Bcc, minus signatures that no
longer match), the S/MIME Content-* fields, and the CMS as base64. Inside the
CMS is the original MIME entity (its Content-* fields and body), CRLF-canonical
(RFC 8551 §3.1.1), optionally signed first (multipart/signed, RFC 8551 §3.5.3)
and optionally carrying protected header fields (RFC 9788).

Memory stays flat whatever the message size: the body is read in chunks twice
(a scan for its canonical length, then encryption; a third time to hash it when
signing), and every DER length is computed before the first ciphertext octet.
"""

from __future__ import annotations

import binascii
import datetime as dt
import io
import os
import re
import secrets
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.cms import (
    ContentCipher,
    ContentEncryptor,
    KeyTransport,
    RecipientIdentifier,
    SignerKey,
    SmimeError,
    detached_signature,
    envelope_frame,
    key_trans_recipient_info,
    sha256_of,
)
from policy.model import CertificateRef

if TYPE_CHECKING:
    from gateway.config import SmimeConfig

try:  # numpy lays base64 out in 76-column lines at memory speed; stdlib is ~3x slower
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is a declared dependency
    _np = None  # type: ignore[assignment]

__all__ = [
    "ContentCipher",
    "KeyTransport",
    "RecipientIdentifier",
    "Signer",
    "SmimeError",
    "SmimeOptions",
    "SmimeResult",
    "certificate_ref",
    "check_smime_config",
    "encrypt_bytes",
    "encrypt_file",
    "encrypt_file_durably",
    "organisation_certificate",
]

# read size; the content key's cipher buffers partial blocks itself. 256 KiB: as fast as
# 1 MiB here (bench/smime.py) and a quarter of the buffers, which dominate a 1 MB message's peak
CHUNK = 256 << 10
MAX_HEADER_BLOCK = 16 << 20  # a header section beyond this is not a message we accept
_LINE_BYTES = 57  # 57 octets -> 76 base64 characters (RFC 2045 §6.8)
_LINE_CHARS = 76


@dataclass(frozen=True)
class Signer:
    """The organisation's signing identity for sign-then-encrypt."""

    certificate: x509.Certificate
    key: SignerKey
    chain: tuple[x509.Certificate, ...] = ()  # intermediates, so receivers can build the path

    @classmethod
    def from_files(cls, certificate: Path, key: Path, chain: Path | None = None) -> Signer:
        certs = _load_certificates(certificate)
        try:
            private = serialization.load_pem_private_key(key.read_bytes(), password=None)
        except (TypeError, ValueError) as exc:  # encrypted, or not a PEM key
            raise SmimeError(f"{key}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(private, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise SmimeError(f"{key}: signing key must be RSA or EC")
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if private.public_key().public_bytes(*spki) != certs[0].public_key().public_bytes(*spki):
            raise SmimeError(f"{key}: key does not belong to the certificate in {certificate}")
        extra = tuple(certs[1:]) + (tuple(_load_certificates(chain)) if chain else ())
        return cls(certificate=certs[0], key=private, chain=extra)


@dataclass(frozen=True)
class SmimeOptions:
    cipher: str = ContentCipher.AES256_CBC
    key_transport: str = KeyTransport.RSA_PKCS1V15
    recipient_identifier: str = RecipientIdentifier.ISSUER_SERIAL
    protect_headers: bool = False  # RFC 9788, header confidentiality policy hcp_baseline
    extra_recipients: tuple[x509.Certificate, ...] = ()  # e.g. the organisation certificate
    signer: Signer | None = None

    def __post_init__(self) -> None:
        # Accept the strings the configuration uses; hold the enums.
        for name, kind in (
            ("cipher", ContentCipher),
            ("key_transport", KeyTransport),
            ("recipient_identifier", RecipientIdentifier),
        ):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except ValueError:
                allowed = ", ".join(m.value for m in kind)
                raise SmimeError(f"{name} {value!r}: must be one of {allowed}") from None
        object.__setattr__(self, "extra_recipients", tuple(self.extra_recipients))

    @classmethod
    def from_config(cls, smime_cfg: SmimeConfig) -> SmimeOptions:
        """Options from `[smime]`; reads the organisation certificate and signer files."""
        extra: tuple[x509.Certificate, ...] = ()
        if smime_cfg.organisation_certificate:
            extra = (organisation_certificate(Path(smime_cfg.organisation_certificate)),)
        signer = None
        if smime_cfg.sign_certificate or smime_cfg.sign_key:
            if not (smime_cfg.sign_certificate and smime_cfg.sign_key):
                raise SmimeError("smime.sign_certificate and smime.sign_key go together")
            signer = Signer.from_files(
                Path(smime_cfg.sign_certificate),
                Path(smime_cfg.sign_key),
                Path(smime_cfg.sign_chain) if smime_cfg.sign_chain else None,
            )
        return cls(
            cipher=smime_cfg.cipher,
            key_transport=smime_cfg.key_transport,
            recipient_identifier=smime_cfg.recipient_identifier,
            protect_headers=smime_cfg.protect_headers,
            extra_recipients=extra,
            signer=signer,
        )


@dataclass(frozen=True)
class SmimeResult:
    """What was done, for the audit record."""

    cipher: str  # "aes256-cbc" | "aes256-gcm"
    key_transport: str  # "rsa-pkcs1v15" | "rsa-oaep"
    recipients: int  # RecipientInfos in the CMS, the organisation certificate included
    size: int  # octets of the complete output message
    recipient_identifier: str = RecipientIdentifier.ISSUER_SERIAL
    signed: bool = False
    headers_protected: bool = False
    smime_type: str = "enveloped-data"
    signer: x509.Certificate | None = None
    extra_recipients: tuple[x509.Certificate, ...] = ()  # the organisation certificate(s)

    @property
    def algorithms(self) -> str:
        """For the audit record's `cipher`, e.g. "aes256-cbc rsa-pkcs1v15 issuer-serial"."""
        return f"{self.cipher} {self.key_transport} {self.recipient_identifier}"

    def audit(self) -> dict[str, object]:
        """Everything about the protection beyond the recipient's own certificate, for
        the audit entry's `smime`: a compliance officer can tell from it who else can
        read the message (the organisation) and whether it was signed, and how."""
        return {
            "cipher": self.cipher,
            "key_transport": self.key_transport,
            "recipient_identifier": self.recipient_identifier,
            "smime_type": self.smime_type,
            "recipient_infos": self.recipients,
            "signed": self.signed,
            "digest": "sha-256" if self.signed else None,
            "signer": _cert_summary(self.signer) if self.signer is not None else None,
            "headers_protected": self.headers_protected,
            "organisation": [_cert_summary(c) for c in self.extra_recipients],
        }


def _cert_summary(cert: x509.Certificate) -> dict[str, str]:
    return {"subject": cert.subject.rfc4514_string(), "sha256": cert.fingerprint(hashes.SHA256()).hex()}


def certificate_ref(cert: x509.Certificate, source: str) -> CertificateRef:
    """The audit's view of a certificate a message was encrypted to."""
    return CertificateRef(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
        source=source,
    )


def check_smime_config(smime_cfg: SmimeConfig) -> list[tuple[str, str]]:
    """Problems with `[smime]` as (key, message), for check-config."""
    problems: list[tuple[str, str]] = []
    if smime_cfg.recipient_identifier not in {m.value for m in RecipientIdentifier}:
        problems.append(("smime.recipient_identifier", "must be issuer-serial or ski"))
    try:
        SmimeOptions.from_config(smime_cfg)
    except (SmimeError, OSError, ValueError) as exc:
        problems.append(("smime", str(exc)))
    return problems


def encrypt_file(
    source: Path,
    destination: Path,
    recipients: Sequence[x509.Certificate],
    options: SmimeOptions,
    abort: threading.Event | None = None,
) -> SmimeResult:
    """Encrypt the RFC 5322 message in `source` into `destination` (created or replaced).

    Blocking and CPU-bound for large messages: run it in an executor. The caller
    fsyncs/renames `destination` as its spool requires; on any error it is removed.
    Setting `abort` (the caller gave up waiting) stops it at the next chunk with
    SmimeError: an executor thread cannot be cancelled from outside.
    """
    try:
        with source.open("rb") as src, destination.open("wb") as dst:
            return _encrypt(src, dst, recipients, options, abort)
    except BaseException:
        # A half-written S/MIME message must never be mistaken for a whole one.
        destination.unlink(missing_ok=True)
        raise


def encrypt_file_durably(
    source: Path,
    destination: Path,
    recipients: Sequence[x509.Certificate],
    options: SmimeOptions,
    abort: threading.Event | None = None,
) -> SmimeResult:
    """`encrypt_file`, and `destination` is on disk (fsynced, name included) on return.

    The spool journal names the file right after this returns, and a journal line
    must never point at a file a crash can lose or truncate: write a temporary
    name, fsync it, rename it into place (atomic, POSIX rename(2)), fsync the
    folder so the new name itself is durable.
    """
    temporary = destination.with_name(f".{destination.name}.tmp")
    result = encrypt_file(source, temporary, recipients, options, abort)
    try:
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if abort is not None and abort.is_set():
            raise SmimeError("encryption abandoned: the caller stopped waiting")
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fd = os.open(destination.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return result


def encrypt_bytes(
    message: bytes, recipients: Sequence[x509.Certificate], options: SmimeOptions
) -> bytes:
    out = io.BytesIO()
    _encrypt(io.BytesIO(message), out, recipients, options)
    return out.getvalue()


# --- reading the original message -----------------------------------------------------

# Structural fields belong to the MIME entity and travel inside (RFC 8551 §3.1).
_STRUCTURAL_PREFIX = "content-"
_STRUCTURAL = {"mime-version"}
# Bcc: the RecipientInfos already name every recipient; a Bcc recipient gets a
# message of their own from the pipeline, and no Bcc field leaves (RFC 5322 §3.6.3).
# DKIM/ARC signatures cover the original body, which no longer exists after
# encryption (RFC 6376 §3.7, RFC 8617 §4.1): a broken signature only hurts.
_DROPPED = {
    "bcc",
    "resent-bcc",
    "dkim-signature",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
}
# Trace fields describe the transport, not the author's message; they stay outside only.
_TRACE = {"received", "return-path"}
_HEADER_END = re.compile(rb"\n\r?\n")
_LINE_SPLIT = re.compile(rb"\r?\n")
_EOL = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class _Field:
    name: str  # lower case
    raw: bytes  # the whole field as received, folding kept, CRLF line ends


@dataclass(frozen=True)
class _Body:
    offset: int
    raw_length: int
    length: int  # after CRLF canonicalisation
    canonical: bool  # already CRLF throughout: copy as is


def _read_header(src: BinaryIO) -> tuple[list[_Field], int]:
    """The header fields and the offset where the body starts."""
    buf = b""
    end: int | None = None
    body_offset = 0
    for _ in range(MAX_HEADER_BLOCK // CHUNK + 1):
        chunk = src.read(CHUNK)
        buf += chunk
        if buf.startswith((b"\r\n", b"\n")):  # no header fields at all
            end, body_offset = 0, 2 if buf.startswith(b"\r\n") else 1
            break
        match = _HEADER_END.search(buf)
        if match:
            end, body_offset = match.start() + 1, match.end()
            break
        if not chunk:  # header fields only, no body
            end = body_offset = len(buf)
            break
    else:
        raise SmimeError(f"header section longer than {MAX_HEADER_BLOCK} octets")
    assert end is not None
    fields: list[_Field] = []
    lines: list[bytes] = []
    for line in _LINE_SPLIT.split(buf[:end]):
        if line[:1] in (b" ", b"\t") and lines:
            lines.append(line)
            continue
        if lines:
            fields.append(_field(lines))
        lines = [line] if b":" in line else []  # not a field (e.g. an mbox "From " line)
    if lines:
        fields.append(_field(lines))
    return fields, body_offset


def _field(lines: list[bytes]) -> _Field:
    name = lines[0].split(b":", 1)[0].strip().decode("ascii", "replace").lower()
    return _Field(name=name, raw=b"\r\n".join(lines) + b"\r\n")


def _scan_body(src: BinaryIO, offset: int) -> _Body:
    """Length of the body once every line ends in CRLF (RFC 8551 §3.1.1)."""
    src.seek(offset)
    raw = cr = lf = crlf = 0
    last = b""
    for chunk in iter(lambda: src.read(CHUNK), b""):
        raw += len(chunk)
        cr += chunk.count(b"\r")
        lf += chunk.count(b"\n")
        crlf += chunk.count(b"\r\n") + (last == b"\r" and chunk[:1] == b"\n")
        last = chunk[-1:]
    # Each lone CR and each lone LF grows by one octet into a CRLF.
    length = raw + (cr - crlf) + (lf - crlf)
    return _Body(offset=offset, raw_length=raw, length=length, canonical=length == raw)


def _body_chunks(src: BinaryIO, body: _Body) -> Iterator[bytes]:
    src.seek(body.offset)
    if body.canonical:
        yield from iter(lambda: src.read(CHUNK), b"")
        return
    carry = b""
    for chunk in iter(lambda: src.read(CHUNK), b""):
        data = carry + chunk
        carry = b""
        if data.endswith(b"\r"):  # may be the first half of a CRLF split across reads
            data, carry = data[:-1], b"\r"
        yield _EOL.sub(b"\r\n", data)
    if carry:
        yield b"\r\n"


Segment = bytes | _Body


def _segment_chunks(src: BinaryIO, segments: Sequence[Segment]) -> Iterator[bytes]:
    for segment in segments:
        if isinstance(segment, _Body):
            yield from _body_chunks(src, segment)
        elif segment:
            yield segment


def _segments_length(segments: Sequence[Segment]) -> int:
    return sum(s.length if isinstance(s, _Body) else len(s) for s in segments)


# --- building the message -------------------------------------------------------------


def _is_structural(name: str) -> bool:
    return name.startswith(_STRUCTURAL_PREFIX) or name in _STRUCTURAL


def _with_hp_cipher(content_type: bytes) -> bytes:
    # RFC 9788 §2.1.1: the Cryptographic Payload's Content-Type carries hp="cipher"
    # when the message is encrypted.
    return content_type.rstrip(b"\r\n").rstrip(b"; \t") + b'; hp="cipher"\r\n'


def _plan_headers(
    fields: Sequence[_Field], protect: bool
) -> tuple[list[bytes], bytes]:
    """(outer header fields, inner entity header section incl. the empty line)."""
    structural = [f for f in fields if _is_structural(f.name)]
    content_fields = [f.raw for f in structural if f.name != "mime-version"]
    if not any(f.name == "content-type" for f in structural):
        # RFC 2045 §5.2: what a message without Content-Type means, said out loud
        # so the inner entity never starts with an empty header section.
        content_fields.insert(0, b"Content-Type: text/plain; charset=us-ascii\r\n")
    kept = [f for f in fields if not _is_structural(f.name) and f.name not in _DROPPED]
    if not protect:
        return [f.raw for f in kept], b"".join(content_fields) + b"\r\n"
    outer: list[_Field] = []
    for f in kept:
        # RFC 9788 §3.2.1 hcp_baseline: obscure Subject, drop Keywords and Comments.
        if f.name == "subject":
            outer.append(_Field("subject", b"Subject: [...]\r\n"))
        elif f.name not in ("keywords", "comments"):
            outer.append(f)
    inner = [f.raw for f in kept if f.name not in _TRACE]
    # RFC 9788 §2.2: HP-Outer records what the outside showed, so the reader can
    # tell which protected fields were obscured in transit.
    inner += [b"HP-Outer: " + f.raw for f in outer if f.name not in _TRACE]
    inner += [_with_hp_cipher(c) if c[:13].lower() == b"content-type:" else c for c in content_fields]
    return [f.raw for f in outer], b"".join(inner) + b"\r\n"


def _wrap_base64(data: bytes | memoryview) -> bytes:
    """base64 of `data` in 76-column lines, each ending in CRLF."""
    full = len(data) - len(data) % _LINE_BYTES
    out = bytes(_wrap_full_lines(binascii.b2a_base64(data[:full], newline=False))) if full else b""
    if full < len(data):
        out += binascii.b2a_base64(data[full:], newline=False) + b"\r\n"
    return out


def _wrap_full_lines_numpy(b64: bytes) -> bytes | memoryview:
    lines = len(b64) // _LINE_CHARS
    assert _np is not None
    grid = _np.empty((lines, _LINE_CHARS + 2), dtype=_np.uint8)
    grid[:, :_LINE_CHARS] = _np.frombuffer(b64, dtype=_np.uint8).reshape(lines, _LINE_CHARS)
    grid[:, _LINE_CHARS] = 13
    grid[:, _LINE_CHARS + 1] = 10
    return grid.reshape(-1).data  # no copy: file.write takes the buffer


def _wrap_full_lines_stdlib(b64: bytes) -> bytes | memoryview:
    n = len(b64)
    pieces = map(b64.__getitem__, map(slice, range(0, n, 76), range(76, n + 76, 76)))
    return b"\r\n".join(pieces) + b"\r\n"


_wrap_full_lines = _wrap_full_lines_numpy if _np is not None else _wrap_full_lines_stdlib


class _Base64Out:
    """Writes base64 in 76-column CRLF lines, encoding whole lines as data arrives."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pending = b""
        self.written = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        if self._pending:
            # Complete the pending line from the front of `data` rather than
            # copying all of `data` behind it.
            take = _LINE_BYTES - len(self._pending)
            self._pending += bytes(view[:take])
            view = view[take:]
            if len(self._pending) < _LINE_BYTES:
                return
            self._emit(binascii.b2a_base64(self._pending, newline=False) + b"\r\n")
            self._pending = b""
        full = len(view) - len(view) % _LINE_BYTES
        self._pending = bytes(view[full:])
        if full:
            self._emit(_wrap_full_lines(binascii.b2a_base64(view[:full], newline=False)))

    def close(self) -> None:
        if self._pending:
            self._emit(binascii.b2a_base64(self._pending, newline=False) + b"\r\n")
            self._pending = b""

    def _emit(self, text: bytes | memoryview) -> None:
        self._out.write(text)
        self.written += len(text)


def _unique(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    result = []
    for cert in certs:
        fingerprint = cert.fingerprint(hashes.SHA256())
        if fingerprint not in seen:
            seen.add(fingerprint)
            result.append(cert)
    return result


def _load_certificates(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    try:
        certs = (
            x509.load_pem_x509_certificates(data)
            if b"-----BEGIN" in data
            else [x509.load_der_x509_certificate(data)]
        )
    except ValueError as exc:
        raise SmimeError(f"{path}: not a certificate ({exc})") from None
    if not certs:
        raise SmimeError(f"{path}: no certificate found")
    return certs


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def organisation_certificate(path: Path, now: dt.datetime | None = None) -> x509.Certificate:
    """The end-entity certificate in `path`, checked fit to encrypt to.

    The file is often the certificate with its chain (as a CA delivers it); the
    CA certificates are not recipients: every certificate we encrypt to becomes a
    RecipientInfo, and the mail would be readable by whoever holds a CA key.
    """
    certs = _load_certificates(path)
    # An end entity is not a CA (RFC 5280 §4.2.1.9) and issued none of the others
    # (old v1 CA certificates carry no basicConstraints at all).
    ends = [c for c in certs
            if not _is_ca(c) and not any(o is not c and o.issuer == c.subject for o in certs)]
    if not ends:
        raise SmimeError(f"{path}: only CA certificates, no end-entity certificate to encrypt to")
    if len(ends) > 1:
        subjects = "; ".join(c.subject.rfc4514_string() for c in ends)
        raise SmimeError(f"{path}: more than one end-entity certificate ({subjects}); keep only the organisation's")
    cert = ends[0]
    subject = cert.subject.rfc4514_string()
    when = now or dt.datetime.now(dt.UTC)
    if when < cert.not_valid_before_utc:
        raise SmimeError(f"{path}: certificate {subject} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    if when > cert.not_valid_after_utc:
        raise SmimeError(f"{path}: certificate {subject} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise SmimeError(f"{path}: certificate {subject} has no RSA key; only RSA key transport is supported")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    # RFC 8550 §4.4.2: with keyUsage present, keyEncipherment is required for RSA key transport.
    if usage is not None and not usage.key_encipherment:
        raise SmimeError(f"{path}: certificate {subject} does not permit keyEncipherment")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    # RFC 8550 §4.4.4: an extendedKeyUsage without emailProtection (or anyExtendedKeyUsage)
    # does not allow S/MIME.
    if eku is not None and not {ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(eku):
        raise SmimeError(f"{path}: certificate {subject} is not for e-mail protection (extendedKeyUsage)")
    return cert


def _signed_entity(
    src: BinaryIO, entity: list[Segment], signer: Signer
) -> list[Segment]:
    """multipart/signed around the entity (RFC 8551 §3.5.3), detached SHA-256 signature."""
    digest = sha256_of(_segment_chunks(src, entity))
    signature = detached_signature(digest, signer.certificate, signer.key, signer.chain)
    boundary = f"----=_sikkermail_signed_{secrets.token_hex(16)}".encode()
    head = (
        b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n"
        b" micalg=sha-256; boundary=\"" + boundary + b"\"\r\n"
        b"\r\n"
        b"This is a cryptographically signed message in MIME format.\r\n"
        b"\r\n--" + boundary + b"\r\n"
    )
    tail = (
        b"\r\n--" + boundary + b"\r\n"
        b"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n"
        b"Content-Description: S/MIME Cryptographic Signature\r\n"
        b"\r\n" + _wrap_base64(signature) + b"\r\n--" + boundary + b"--\r\n"
    )
    return [head, *entity, tail]


def _encrypt(
    src: BinaryIO,
    dst: BinaryIO,
    recipients: Sequence[x509.Certificate],
    options: SmimeOptions,
    abort: threading.Event | None = None,
) -> SmimeResult:
    certs = _unique([*recipients, *options.extra_recipients])
    if not certs:
        raise SmimeError("no recipient certificate to encrypt to")
    fields, body_offset = _read_header(src)
    body = _scan_body(src, body_offset)
    outer, entity_head = _plan_headers(fields, options.protect_headers)
    plaintext: list[Segment] = [entity_head, body]
    if options.signer is not None:
        plaintext = _signed_entity(src, plaintext, options.signer)

    cipher = ContentCipher(options.cipher)
    encryptor = ContentEncryptor(cipher)
    infos = [
        key_trans_recipient_info(
            cert,
            encryptor.key,
            KeyTransport(options.key_transport),
            RecipientIdentifier(options.recipient_identifier),
        )
        for cert in certs
    ]
    plaintext_length = _segments_length(plaintext)
    frame = envelope_frame(cipher, infos, encryptor.iv, plaintext_length)

    # RFC 8551 §3.2.2 / RFC 5083 §2: the smime-type names the CMS content type.
    smime_type = "enveloped-data" if cipher is ContentCipher.AES256_CBC else "authEnveloped-data"
    header = b"".join(outer) + (
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: application/pkcs7-mime; smime-type=" + smime_type.encode() + b";\r\n"
        b" name=\"smime.p7m\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=\"smime.p7m\"\r\n"
        b"Content-Description: S/MIME Encrypted Message\r\n"
        b"\r\n"
    )
    dst.write(header)
    b64 = _Base64Out(dst)
    b64.write(frame.prefix)
    for chunk in _segment_chunks(src, plaintext):
        if abort is not None and abort.is_set():
            raise SmimeError("encryption abandoned: the caller stopped waiting")
        b64.write(encryptor.update(chunk))
    if encryptor.octets != plaintext_length:
        # The DER lengths written up front would be wrong (the source changed under us).
        raise SmimeError(f"content was {encryptor.octets} octets, expected {plaintext_length}")
    b64.write(encryptor.finish())
    b64.close()
    dst.flush()
    return SmimeResult(
        cipher=cipher.value,
        key_transport=KeyTransport(options.key_transport).value,
        recipients=len(certs),
        size=len(header) + b64.written,
        recipient_identifier=RecipientIdentifier(options.recipient_identifier).value,
        signed=options.signer is not None,
        headers_protected=options.protect_headers,
        smime_type=smime_type,
        signer=options.signer.certificate if options.signer is not None else None,
        extra_recipients=tuple(c for c in options.extra_recipients if c in certs),
    )

