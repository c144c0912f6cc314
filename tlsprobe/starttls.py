"""Probe one MX address: banner, EHLO, STARTTLS, handshake, certificate; QUIT, no mail.

A probe answers "what can this MX do", never "can I send": it stops before MAIL
FROM. Anything that goes wrong before the TLS question is answered (refused,
timeout, 4xx, garbled reply) makes the MX unreachable (grade None), which says
nothing about TLS: unknowns must not turn into "no TLS" (fail closed).
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from dataclasses import dataclass

from cryptography import x509

from tlsprobe.results import Grade, MxProbe, ProbeError
from tlsprobe.tls import client_tls_context, legacy_diagnosis_context

VERSION_RANK = {"SSLv3": 0, "TLSv1": 1, "TLSv1.1": 2, "TLSv1.2": 3, "TLSv1.3": 4}
_MAX_REPLY_LINES = 100  # a reply longer than this is a broken or hostile server


@dataclass(frozen=True)
class ProbeSettings:
    port: int = 25
    min_version: str = "TLSv1.2"
    ca_file: str | None = None
    helo_name: str = "localhost"
    timeout: float = 30.0  # for each connection: connect, replies and handshake together


@dataclass(frozen=True)
class _Session:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    banner: str
    starttls: bool


async def _reply(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    """One SMTP reply (RFC 5321 §4.2.1): "250-..." lines until "250 ..."."""
    lines: list[str] = []
    for _ in range(_MAX_REPLY_LINES):
        raw = await reader.readline()
        if not raw:
            raise ProbeError("connection closed by the server")
        line = raw.decode("ascii", "replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise ProbeError(f"not an SMTP reply: {line[:80]!r}")
        lines.append(line[4:])
        if len(line) == 3 or line[3] == " ":
            return int(line[:3]), lines
    raise ProbeError("SMTP reply too long")


async def _command(session_writer: asyncio.StreamWriter, reader: asyncio.StreamReader,
                   line: str) -> tuple[int, list[str]]:
    session_writer.write(line.encode("ascii") + b"\r\n")
    await session_writer.drain()
    return await _reply(reader)


async def _open(name: str, address: str, settings: ProbeSettings) -> _Session:
    """Connect, read the banner, EHLO. Raises ProbeError when the MX is unreachable."""
    try:
        reader, writer = await asyncio.open_connection(address, settings.port)
    except OSError as exc:
        raise ProbeError(f"cannot connect to {address}:{settings.port}: {exc.strerror or exc}")
    try:
        code, lines = await _reply(reader)
        banner = f"{code} {lines[0]}" if lines else str(code)
        if code != 220:
            raise ProbeError(f"refused with banner {banner}")
        code, lines = await _command(writer, reader, f"EHLO {settings.helo_name}")
        if code != 250:
            # no ESMTP at all: STARTTLS (an ESMTP extension) cannot be offered
            return _Session(reader, writer, banner, starttls=False)
        keywords = {line.split(" ", 1)[0].upper() for line in lines[1:]}
        return _Session(reader, writer, banner, starttls="STARTTLS" in keywords)
    except BaseException:
        writer.close()
        raise


async def _quit(writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
    """Polite QUIT; its failure changes nothing about what was learned."""
    try:
        await asyncio.wait_for(_command(writer, reader, "QUIT"), 2.0)
    except (ProbeError, OSError, TimeoutError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _starttls(session: _Session, name: str, context: ssl.SSLContext) -> ssl.SSLObject:
    """STARTTLS on an open session; the SSL object of the upgraded connection."""
    code, lines = await _command(session.writer, session.reader, "STARTTLS")
    if code != 220:
        # 454 "TLS not available due to temporary reason" (RFC 3207 §4): temporary
        raise ProbeError(f"STARTTLS refused: {code} {' '.join(lines)}")
    await session.writer.start_tls(context, server_hostname=name)
    ssl_object = session.writer.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):  # pragma: no cover - asyncio contract
        raise ProbeError("no TLS after STARTTLS")
    return ssl_object


def _certificate(ssl_object: ssl.SSLObject) -> tuple[str | None, str | None]:
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None, None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None, None
    not_after = cert.not_valid_after_utc.astimezone(datetime.UTC).isoformat()
    return cert.subject.rfc4514_string(), not_after


def _is_verification_error(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLCertVerificationError)


def _is_protocol_refusal(exc: BaseException) -> bool:
    """A definite "no" from the TLS layer: no common version or cipher at our minimum.

    EOF or reset during the handshake is not one: that may be the network (unknown).
    """
    return (isinstance(exc, ssl.SSLError)
            and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)))


class MxProber:
    """Probes MX addresses with fixed settings; the two client contexts are built once."""

    def __init__(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self._verified = client_tls_context(
            min_version=settings.min_version, ca_file=settings.ca_file, verify=True)
        self._encrypted = client_tls_context(
            min_version=settings.min_version, ca_file=settings.ca_file, verify=False)

    async def probe(self, name: str, address: str, preference: int = 0) -> MxProbe:
        try:
            return await asyncio.wait_for(self._probe(name, address, preference),
                                          self.settings.timeout * 3)
        except TimeoutError:
            return MxProbe(name, address, preference, None,
                           f"{name} [{address}]: probe timed out")

    async def _open_tls(self, name: str, address: str,
                        context: ssl.SSLContext) -> tuple[_Session, ssl.SSLObject]:
        """A fresh connection taken through STARTTLS; closed again if that fails."""
        session = await self._timed_open(name, address)
        try:
            ssl_object = await asyncio.wait_for(_starttls(session, name, context), self.settings.timeout)
        except BaseException:
            session.writer.close()
            raise
        return session, ssl_object

    async def _timed_open(self, name: str, address: str) -> _Session:
        try:
            return await asyncio.wait_for(_open(name, address, self.settings), self.settings.timeout)
        except TimeoutError:
            raise ProbeError(f"no answer within {self.settings.timeout:g}s")

    async def _probe(self, name: str, address: str, preference: int) -> MxProbe:
        where = f"{name} [{address}]"
        try:
            session = await self._timed_open(name, address)
        except ProbeError as exc:
            return MxProbe(name, address, preference, None, f"{where}: unreachable: {exc}")
        if not session.starttls:
            await _quit(session.writer, session.reader)
            return MxProbe(name, address, preference, Grade.NONE,
                           f"{where}: STARTTLS not offered", banner=session.banner, starttls=False)
        # First with full verification, as tls-verified delivery will connect; only
        # when the certificate fails do we look again for encryption alone.
        try:
            ssl_object = await asyncio.wait_for(_starttls(session, name, self._verified),
                                                self.settings.timeout)
        except BaseException as exc:
            session.writer.close()
            if _is_verification_error(exc):
                message = getattr(exc, "verify_message", "") or str(exc)
                return await self._probe_unverified(name, address, preference, message)
            if isinstance(exc, ProbeError):  # e.g. 454: temporary by definition (RFC 3207 §4)
                return MxProbe(name, address, preference, None, f"{where}: {exc} (temporary)",
                               banner=session.banner, starttls=True)
            if isinstance(exc, (OSError, TimeoutError)):
                return await self._handshake_failed(name, address, preference, session.banner, exc)
            raise
        subject, not_after = _certificate(ssl_object)
        version, cipher = ssl_object.version(), ssl_object.cipher()
        await _quit(session.writer, session.reader)
        return MxProbe(
            name, address, preference, Grade.VERIFIED,
            f"{where}: {version}, certificate valid for {name}",
            banner=session.banner, starttls=True, tls_version=version,
            cipher=cipher[0] if cipher else None, cert_verified=True,
            cert_subject=subject, cert_not_after=not_after,
        )

    async def _probe_unverified(self, name: str, address: str, preference: int,
                                verify_message: str) -> MxProbe:
        where = f"{name} [{address}]"
        try:
            session, ssl_object = await self._open_tls(name, address, self._encrypted)
        except BaseException as exc:
            if _is_protocol_refusal(exc):
                return MxProbe(name, address, preference, Grade.NONE,
                               f"{where}: certificate not valid ({verify_message}) and no "
                               f"handshake at {self.settings.min_version} or newer: {exc}",
                               starttls=True, cert_verified=False)
            if isinstance(exc, (ProbeError, OSError, TimeoutError)):
                return MxProbe(name, address, preference, None,
                               f"{where}: second connection failed: {exc or type(exc).__name__}",
                               starttls=True, cert_verified=False)
            raise
        subject, not_after = _certificate(ssl_object)
        version, cipher = ssl_object.version(), ssl_object.cipher()
        await _quit(session.writer, session.reader)
        return MxProbe(
            name, address, preference, Grade.UNVERIFIED,
            f"{where}: {version}, certificate not valid for {name}: {verify_message}",
            banner=session.banner, starttls=True, tls_version=version,
            cipher=cipher[0] if cipher else None, cert_verified=False,
            cert_subject=subject, cert_not_after=not_after,
        )

    async def _handshake_failed(self, name: str, address: str, preference: int, banner: str,
                                error: BaseException) -> MxProbe:
        """STARTTLS was offered but the handshake at our minimum version failed.

        Servers differ in how they refuse an old-only handshake: an alert (an
        SSLError) or simply closing the connection (aiosmtpd does; so might a
        flaky network). So we look again with a legacy handshake: if the server
        then negotiates a version below the minimum, that is a definite "none";
        a reset with no such proof stays unknown (fail closed, try later).
        """
        where = f"{name} [{address}]"
        detail = str(error) or type(error).__name__
        spoken = await self._legacy_version(name, address)
        if spoken is not None and VERSION_RANK.get(spoken, 99) < VERSION_RANK[self.settings.min_version]:
            return MxProbe(
                name, address, preference, Grade.NONE,
                f"{where}: STARTTLS offered, but the server negotiates only {spoken}, below "
                f"the minimum {self.settings.min_version}",
                banner=banner, starttls=True, tls_version=spoken,
            )
        if spoken is None and _is_protocol_refusal(error):
            return MxProbe(
                name, address, preference, Grade.NONE,
                f"{where}: STARTTLS offered, but no handshake at {self.settings.min_version} "
                f"or newer: {detail}",
                banner=banner, starttls=True,
            )
        return MxProbe(name, address, preference, None,
                       f"{where}: TLS handshake failed (temporary?): {detail}",
                       banner=banner, starttls=True)

    async def _legacy_version(self, name: str, address: str) -> str | None:
        """For the reason text only: which (too old) version the server does speak."""
        try:
            session, ssl_object = await self._open_tls(name, address, legacy_diagnosis_context())
        except (ProbeError, OSError, TimeoutError):
            return None
        version = ssl_object.version()
        await _quit(session.writer, session.reader)
        return version
