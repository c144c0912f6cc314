"""SMTP from the internal mail server (aiosmtpd), in the gateway's own event loop.

The gateway is never an open relay: only clients in `allowed_networks`, or
authenticated over TLS where AUTH is configured, may send. `250` is said only
after the message and its envelope are fsynced in the spool.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import errno
import hashlib
import hmac
import ipaddress
import re
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from gateway import eventlog
from gateway.config import Config
from gateway.metrics import Metrics
from gateway.spool import Envelope, Spool, new_id

# RFC 5321 §4.1.2 in spirit: a local part and a domain (or address literal); no
# spaces, no control characters, no second @ outside a quoted local part.
_DOMAIN = re.compile(r"^(?:[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\u0080-\uffff-]{0,61}[A-Za-z0-9\u0080-\uffff])?\.)*"
                     r"[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\u0080-\uffff-]{0,61}[A-Za-z0-9\u0080-\uffff])?$")
_LITERAL = re.compile(r"^\[(?:IPv6:)?[0-9A-Fa-f:.]+\]$")
_LOCAL = re.compile(r'^(?:"(?:[^"\\\r\n]|\\.)*"|[^\s@"()<>\[\]\\,;:]+)$')


# The id of the message whose DATA this connection's task is handling: aiosmtpd calls
# handle_exception(error) without the session, but in the same task as the hook that
# failed, so a context variable names the message in the log line.
_current_message: contextvars.ContextVar[str | None] = contextvars.ContextVar("smtp_message", default=None)
_current_client: contextvars.ContextVar[str | None] = contextvars.ContextVar("smtp_client", default=None)


def valid_address(address: str) -> bool:
    if not address or len(address) > 320 or any(ord(c) < 32 for c in address):
        return False
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or len(local) > 64:
        return False
    return bool(_LOCAL.match(local)) and bool(_DOMAIN.match(domain) or _LITERAL.match(domain))


def has_bare_line_ending(data: bytes) -> bool:
    """A CR or LF that is not part of CRLF. RFC 5321 §2.3.8 forbids them, and
    accepting them is what makes SMTP smuggling (`<LF>.<CR><LF>`) possible."""
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


# RFC 5322 §2.1.1: a line MUST be no more than 998 characters, excluding the CRLF.
# aiosmtpd refuses lines of 1000 and more itself (500, RFC 5321 §4.5.3.1.6) but lets
# a 999-octet line through.
_OVERLONG_LINE = re.compile(rb"[^\r\n]{999}")


def has_overlong_header_line(data: bytes) -> bool:
    return _OVERLONG_LINE.search(data, 0, header_block_size(data)) is not None


def header_block_size(data: bytes) -> int:
    end = data.find(b"\r\n\r\n")
    return len(data) if end < 0 else end + 2


class Users:
    """SMTP AUTH users: one `name:scrypt$N$r$p$salt$hash` line each (base64 salt and hash)."""

    def __init__(self, entries: dict[str, str]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, path: str) -> Users:
        entries: dict[str, str] = {}
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, hashed = line.partition(":")
            if not sep or not hashed.startswith("scrypt$"):
                raise ValueError(f"{path}:{number}: expected name:scrypt$N$r$p$salt$hash")
            entries[name] = hashed
        return cls(entries)

    def check(self, name: str, password: bytes) -> bool:
        hashed = self.entries.get(name)
        if hashed is None:
            # spend the same effort for unknown users: no user enumeration by timing
            hash_password(b"x", salt=b"0" * 16)
            return False
        _scheme, n, r, p, salt, expected = hashed.split("$")
        digest = hashlib.scrypt(password, salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                maxmem=128 * 1024 * 1024, dklen=32)
        return hmac.compare_digest(digest, base64.b64decode(expected))


def hash_password(password: bytes, *, salt: bytes | None = None, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    import os

    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=128 * 1024 * 1024, dklen=32)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class RelayHandler:
    """aiosmtpd hooks. Replies carry enhanced status codes (RFC 3463)."""

    def __init__(
        self,
        cfg: Config,
        spool: Spool,
        metrics: Metrics,
        on_accepted: Callable[[Envelope], None],
    ) -> None:
        self.cfg = cfg
        self.spool = spool
        self.metrics = metrics
        self.on_accepted = on_accepted
        self.networks = cfg.allowed_networks
        self.accepting = True

    def _allowed(self, session: Session) -> bool:
        if getattr(session, "authenticated", False):
            return True
        peer = session.peer
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: SmtpEnvelope,
                          address: str, mail_options: list[str]) -> str:
        if not self.accepting:
            return "421 4.3.2 Service shutting down, try again later"
        _current_client.set(str(session.peer))
        _current_message.set(None)
        if not self._allowed(session):
            self.metrics.rejected.labels("relay-denied").inc()
            eventlog.warning("relay-denied", client=str(session.peer))
            return "550 5.7.1 Relaying denied: client not allowed to send through this gateway"
        if address and not valid_address(address):
            return "553 5.1.7 Bad sender address syntax"
        for option in mail_options:
            if option.upper().startswith("SIZE="):
                try:
                    declared = int(option[5:])
                except ValueError:
                    return "501 5.5.4 Bad SIZE parameter"
                if declared > self.cfg.server.max_message_size:
                    return "552 5.3.4 Message size exceeds fixed maximum message size"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: SmtpEnvelope,
                          address: str, rcpt_options: list[str]) -> str:
        if not self._allowed(session):
            return "550 5.7.1 Relaying denied"
        if not valid_address(address):
            return "553 5.1.3 Bad recipient address syntax"
        if len(envelope.rcpt_tos) >= self.cfg.server.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        data = envelope.original_content or b""
        if isinstance(data, str):  # pragma: no cover - decode_data is off
            data = data.encode("utf-8", "surrogateescape")
        if has_bare_line_ending(data):
            self.metrics.rejected.labels("bare-line-ending").inc()
            eventlog.warning("rejected-bare-line-ending", client=str(session.peer))
            return "554 5.6.0 Message rejected: bare CR or LF in data (RFC 5321 2.3.8)"
        if header_block_size(data) > self.cfg.server.max_header_size:
            self.metrics.rejected.labels("header-too-large").inc()
            eventlog.warning("rejected-header-too-large", client=str(session.peer), size=header_block_size(data))
            return "552 5.3.4 Message header too large"
        if has_overlong_header_line(data):
            self.metrics.rejected.labels("header-line-too-long").inc()
            eventlog.warning("rejected-header-line-too-long", client=str(session.peer))
            return "554 5.6.0 Message rejected: header line longer than 998 octets (RFC 5322 2.1.1)"
        if len(data) > self.cfg.server.max_message_size:
            eventlog.warning("rejected-too-large", client=str(session.peer), size=len(data))
            return "552 5.3.4 Message size exceeds fixed maximum message size"
        options = {o.upper().split("=")[0]: o for o in envelope.mail_options}
        received_at = time.time()
        message_id = new_id(received_at)
        _current_message.set(message_id)
        peer = session.peer
        client = peer[0] if isinstance(peer, tuple) else str(peer)
        spooled = Envelope(
            id=message_id,
            sender=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            received_at=received_at,
            client=client,
            helo=session.host_name or "",
            smtputf8="SMTPUTF8" in options,
            body_8bit=options.get("BODY", "").upper() == "BODY=8BITMIME",
        )
        stamped = self._received_header(spooled, session, server) + data
        try:
            await asyncio.get_running_loop().run_in_executor(None, partial(self.spool.accept, spooled, stamped))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                eventlog.error("spool-full", id=message_id, client=client)
                return "452 4.3.1 Insufficient system storage"
            eventlog.error("spool-write-failed", id=message_id, client=client, error=str(exc))
            return "451 4.3.0 Temporary local problem, try again later"
        except Exception as exc:  # any failure before fsync: the client must retry, not lose it
            eventlog.error("spool-write-failed", id=message_id, client=client, error=repr(exc))
            return "451 4.3.0 Temporary local problem, try again later"
        self.metrics.received.inc()
        eventlog.event("accepted", id=message_id, client=client, sender=spooled.sender,
                       recipients=len(spooled.recipients), size=len(stamped))
        self.on_accepted(spooled)
        return f"250 2.0.0 Ok: queued as {message_id}"

    async def handle_exception(self, error: Exception) -> str:
        """Any failure inside a hook. aiosmtpd's default answer is `500 Error: ...`, a
        permanent failure that makes the sending server bounce mail we merely could not
        take right now; SPEC: temporary trouble is 4xx, so it retries (RFC 5321 §4.2.1).
        The traceback names code, never the message body."""
        self.metrics.rejected.labels("internal-error").inc()
        eventlog.error("smtp-internal-error", exc_info=error, id=_current_message.get(),
                       client=_current_client.get(), error=type(error).__name__)
        return "451 4.3.0 Temporary local problem, try again later"

    def _received_header(self, env: Envelope, session: Session, server: SMTP) -> bytes:
        protocol = "ESMTP"
        if getattr(session, "ssl", None):
            protocol += "S"
        if getattr(session, "authenticated", False):
            protocol += "A"
        date = format_datetime(datetime.fromtimestamp(env.received_at, UTC))
        helo = re.sub(r"[^\x21-\x7e]", "?", env.helo or "unknown")[:255]
        line = (f"Received: from {helo} ([{env.client}])\r\n\tby {self.cfg.server.hostname} (sikkermail) "
                f"with {protocol} id {env.id};\r\n\t{date}\r\n")
        return line.encode("ascii")


def _server_tls_context(cfg: Config) -> ssl.SSLContext | None:
    if not cfg.server.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cfg.server.tls_cert, cfg.server.tls_key)
    return context


def _authenticator(users: Users) -> Callable[..., AuthResult]:
    def authenticate(server: SMTP, session: Session, envelope: SmtpEnvelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        name = auth_data.login.decode("utf-8", "replace")
        ok = users.check(name, auth_data.password)
        eventlog.event("auth", user=name, success=ok, client=str(session.peer))
        return AuthResult(success=ok, handled=False)

    return authenticate


async def start_smtp(cfg: Config, handler: RelayHandler, *, reuse_port: bool = False) -> asyncio.Server:
    host, port = cfg.listen
    tls_context = _server_tls_context(cfg)
    users = Users.load(cfg.server.users_file) if cfg.server.users_file else None

    def factory() -> SMTP:
        kwargs: dict[str, Any] = {}
        if users is not None:
            kwargs["authenticator"] = _authenticator(users)
            kwargs["auth_require_tls"] = True
        else:
            kwargs["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
        return SMTP(
            handler,
            data_size_limit=cfg.server.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=cfg.server.hostname,
            ident="sikkermail",
            tls_context=tls_context,
            require_starttls=cfg.server.require_starttls,
            timeout=cfg.server.data_timeout,
            **kwargs,
        )

    return await asyncio.get_running_loop().create_server(factory, host=host, port=port, reuse_address=True,
                                                          reuse_port=reuse_port)
