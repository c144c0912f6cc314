"""Delivery to the recipient domain's MX hosts (aiosmtplib), enforcing the decision.

Delivery enforces, the probe advises: for `tls-enforced` and `tls-verified` the
TLS check happens on the very connection that then sends MAIL FROM. A host that
does not offer STARTTLS, negotiates less than the minimum version or (for
verified) presents a certificate not valid for its name is a temporary failure
for that host: the next MX is tried, else the recipients are deferred. Nothing
decided `tls-*` is ever sent in clear. A domain's MTA-STS `enforce` policy (RFC 8461
§5) adds its own demands to any protection: only the MX names it permits, and only
over TLS with a certificate valid for the MX name.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib

from gateway.events import TlsSession
from policy.model import Protection
from tlsprobe.mx import MxAnswer, MxHost
from tlsprobe.tls import client_tls_context


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"


@dataclass(frozen=True)
class RecipientResult:
    address: str
    outcome: Outcome
    response: str  # the remote reply, or our own reason with an enhanced status code
    tls: TlsSession | None = None


@dataclass(frozen=True)
class DeliverySettings:
    hostname: str  # our EHLO name
    mx_port: int
    connect_timeout: float
    delivery_timeout: float
    min_tls_version: str
    ca_file: str | None


@dataclass(frozen=True)
class DeliveryJob:
    domain: str
    sender: str
    recipients: tuple[str, ...]
    payload: Path
    protection: Protection
    smtputf8: bool = False
    body_8bit: bool = False
    mx_allowed: Callable[[str], bool] | None = None  # MTA-STS enforce: which MX names may be used
    # RFC 8461 §4.2/§5: under an `enforce` policy every delivery, whatever its protection,
    # needs STARTTLS and a certificate valid for the MX name
    mta_sts_enforce: bool = False

    @property
    def tls_required(self) -> bool:
        return self.protection.requires_tls or self.mta_sts_enforce

    @property
    def verify_certificate(self) -> bool:
        return self.protection is Protection.TLS_VERIFIED or self.mta_sts_enforce


# Connection cache, as Postfix's smtp_connection_cache_on_demand: a connection that just
# delivered stays open briefly for the next message to the same MX, with the same
# protection (so a reused connection always meets the job's TLS requirement). The MX host
# name is part of the key: the certificate was checked against the name the connection was
# made for, and another domain's MX name on the same address has not been checked.
CACHE_IDLE_SECONDS = 2.0  # Postfix smtp_connection_cache_time_limit
CACHE_MAX_USES = 100
CACHE_MAX_IDLE_PER_KEY = 20


@dataclass
class _Idle:
    smtp: aiosmtplib.SMTP
    tls: TlsSession
    since: float
    uses: int


_CacheKey = tuple[str, str, int, Protection, bool]  # MX name, address, port, protection, MTA-STS enforce


class HostFailure(Exception):
    """This MX host could not take the message now; try the next one."""


def _tls_session(smtp: aiosmtplib.SMTP, mx: MxHost, job: DeliveryJob) -> TlsSession:
    ssl_object = smtp.get_transport_info("ssl_object")
    if ssl_object is None:
        return TlsSession(mx=mx.name, version=None, cipher=None, verified=False, verification="no TLS")
    cipher = ssl_object.cipher()
    if job.verify_certificate:
        how = "MTA-STS enforce" if job.mta_sts_enforce else job.protection.value
        verification = f"certificate chain and name {mx.name} verified ({how})"
    else:
        # Python 3.11's ssl gives no peer chain when verification is off, so validity is not
        # known here; saying "not checked" is the truth, "invalid" would not be
        verification = f"certificate not checked ({job.protection.value}: encryption only)"
    return TlsSession(mx=mx.name, version=ssl_object.version(), cipher=cipher[0] if cipher else None,
                      verified=job.verify_certificate, verification=verification)


class Deliverer:
    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        self.verified_context = client_tls_context(verify=True, min_version=settings.min_tls_version,
                                                   ca_file=settings.ca_file)
        self.encrypting_context = client_tls_context(verify=False, min_version=settings.min_tls_version,
                                                     ca_file=settings.ca_file)
        # Opportunistic TLS (RFC 7435): any encryption beats none; no minimum, no verification.
        self.opportunistic_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.opportunistic_context.check_hostname = False
        self.opportunistic_context.verify_mode = ssl.CERT_NONE
        self._idle: dict[_CacheKey, list[_Idle]] = {}
        self._reaper: asyncio.Task[None] | None = None

    async def deliver(self, job: DeliveryJob, mx: MxAnswer) -> list[RecipientResult]:
        if mx.permanent_failure:
            code = "556 5.1.10" if mx.status == "null-mx" else "550 5.1.2"
            return self._all(job, Outcome.BOUNCED, f"{code} {mx.reason}")
        if not mx.hosts:
            return self._all(job, Outcome.DEFERRED, f"451 4.4.3 {mx.reason}")
        reasons: list[str] = []
        current = ""
        # One deadline for the whole attempt at this domain, every MX host included: a
        # deadline per host would let five tarpitting MX hosts hold a slot five times as long.
        try:
            async with asyncio.timeout(self.settings.delivery_timeout):
                for host in mx.hosts:
                    if job.mx_allowed is not None and not job.mx_allowed(host.name):
                        reasons.append(f"{host.name}: not permitted by the domain's MTA-STS policy")
                        continue
                    for address in host.addresses:
                        current = f"{host.name}[{address}]"
                        try:
                            return await self._transaction(job, host, address)
                        except HostFailure as exc:
                            reasons.append(f"{current}: {exc}")
                        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
                            reasons.append(f"{current}: {type(exc).__name__}: {exc}")
                        current = ""
        except TimeoutError:
            where = f" during {current}" if current else ""
            reasons.append(f"delivery deadline of {self.settings.delivery_timeout:g}s reached{where}")
        detail = "; ".join(reasons) or "no usable MX host"
        return self._all(job, Outcome.DEFERRED, f"451 4.4.1 {detail}")

    @staticmethod
    def _all(job: DeliveryJob, outcome: Outcome, response: str) -> list[RecipientResult]:
        return [RecipientResult(r, outcome, response) for r in job.recipients]

    async def _secure(self, smtp: aiosmtplib.SMTP, job: DeliveryJob, host: MxHost) -> None:
        """STARTTLS as the decision (and the domain's MTA-STS policy) demands."""
        required = job.tls_required
        demand = "the domain's MTA-STS enforce policy" if job.mta_sts_enforce else str(job.protection)
        offered = smtp.supports_extension("starttls")
        if not offered:
            if required:
                raise HostFailure(f"STARTTLS not offered, but {demand} requires it")
            return
        if job.verify_certificate:
            context = self.verified_context
        elif job.protection is Protection.TLS_ENFORCED:
            context = self.encrypting_context
        else:
            context = self.opportunistic_context
        try:
            await smtp.starttls(server_hostname=host.name, tls_context=context)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            if required:
                raise HostFailure(f"TLS handshake failed ({exc}); {demand} requires TLS")
            raise _PlaintextRetry(str(exc))
        except aiosmtplib.SMTPServerDisconnected as exc:
            # aiosmtpd, like many servers, drops the connection when no TLS version is shared
            if required:
                raise HostFailure(f"TLS handshake failed (connection closed: {exc}); {demand} requires TLS")
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if required:
                raise HostFailure(f"STARTTLS refused: {exc.code} {exc.message}")
            raise _PlaintextRetry(f"{exc.code} {exc.message}")
        if required and smtp.get_transport_info("ssl_object") is None:  # pragma: no cover - defensive
            raise HostFailure("connection not encrypted after STARTTLS")

    def _take(self, key: _CacheKey) -> _Idle | None:
        idle = self._idle.get(key)
        while idle:
            entry = idle.pop()
            if entry.smtp.is_connected and time.monotonic() - entry.since < CACHE_IDLE_SECONDS:
                return entry
            entry.smtp.close()
        return None

    def _keep(self, key: _CacheKey, smtp: aiosmtplib.SMTP, tls: TlsSession, uses: int) -> bool:
        idle = self._idle.setdefault(key, [])
        if uses >= CACHE_MAX_USES or len(idle) >= CACHE_MAX_IDLE_PER_KEY or not smtp.is_connected:
            return False
        idle.append(_Idle(smtp, tls, time.monotonic(), uses))
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
        return True

    async def _reap(self) -> None:
        while any(self._idle.values()):
            await asyncio.sleep(CACHE_IDLE_SECONDS / 2)
            now = time.monotonic()
            for key, idle in list(self._idle.items()):
                stale = [e for e in idle if now - e.since >= CACHE_IDLE_SECONDS]
                self._idle[key] = [e for e in idle if e not in stale]
                for entry in stale:
                    await self._quit(entry.smtp)

    @staticmethod
    async def _quit(smtp: aiosmtplib.SMTP) -> None:
        try:
            async with asyncio.timeout(5):
                await smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            smtp.close()

    async def close(self) -> None:
        """QUIT every cached connection (shutdown)."""
        if self._reaper is not None:
            self._reaper.cancel()
        idle, self._idle = self._idle, {}
        await asyncio.gather(*(self._quit(e.smtp) for entries in idle.values() for e in entries))

    async def _transaction(self, job: DeliveryJob, host: MxHost, address: str,
                           plaintext: bool = False) -> list[RecipientResult]:
        key = (host.name, address, self.settings.mx_port, job.protection, job.mta_sts_enforce)
        cached = None if plaintext else self._take(key)
        if cached is not None:
            try:
                results = await self._send(cached.smtp, job, cached.tls)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError):
                cached.smtp.close()  # the server let it go meanwhile: a fresh connection below
            else:
                if not self._keep(key, cached.smtp, cached.tls, cached.uses + 1):
                    await self._quit(cached.smtp)
                return results
        smtp = aiosmtplib.SMTP(hostname=address, port=self.settings.mx_port,
                               local_hostname=self.settings.hostname,
                               timeout=self.settings.connect_timeout, start_tls=False)
        try:
            await smtp.connect()
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise HostFailure(f"greeting {exc.code} {exc.message}")
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError) as exc:
            raise HostFailure(f"cannot connect: {exc}")
        kept = False
        try:
            await smtp.ehlo()
            if not plaintext:
                try:
                    await self._secure(smtp, job, host)
                except _PlaintextRetry:
                    # Opportunistic only: a broken STARTTLS falls back to clear, as Postfix's
                    # `may` level does (RFC 7435 §3); protected mail never reaches this line.
                    assert not job.tls_required
                    smtp.close()
                    return await self._transaction(job, host, address, plaintext=True)
                await smtp.ehlo()
            tls = _tls_session(smtp, host, job)
            if job.tls_required and tls.version is None:  # pragma: no cover - defensive
                raise HostFailure("refusing to send without TLS")
            results = await self._send(smtp, job, tls)
            kept = self._keep(key, smtp, tls, 1)
            return results
        finally:
            if not kept and smtp.is_connected:
                await self._quit(smtp)

    async def _send(self, smtp: aiosmtplib.SMTP, job: DeliveryJob, tls: TlsSession) -> list[RecipientResult]:
        options: list[str] = []
        encoding = "ascii"
        if job.smtputf8:
            encoding = "utf-8"
            if not smtp.supports_extension("smtputf8"):
                return self._all(job, Outcome.BOUNCED,
                                 "553 5.6.7 recipient server does not support SMTPUTF8 (RFC 6531)")
            options.append("SMTPUTF8")
        if job.body_8bit and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        size = job.payload.stat().st_size
        if smtp.supports_extension("size"):
            options.append(f"SIZE={size}")
        try:
            await smtp.mail(job.sender, options=options, encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            return self._rejected_all(job, exc, tls, "MAIL FROM")
        accepted: list[str] = []
        results: dict[str, RecipientResult] = {}
        for rcpt in job.recipients:
            try:
                await smtp.rcpt(rcpt, encoding=encoding)
                accepted.append(rcpt)
            except aiosmtplib.SMTPResponseException as exc:
                outcome = Outcome.BOUNCED if 500 <= exc.code < 600 else Outcome.DEFERRED
                results[rcpt] = RecipientResult(rcpt, outcome, f"{exc.code} {exc.message}", tls)
        if not accepted:
            await smtp.rset()
            return [results[r] for r in job.recipients]
        data = await asyncio.get_running_loop().run_in_executor(None, job.payload.read_bytes)
        try:
            response = await smtp.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            outcome = Outcome.BOUNCED if 500 <= exc.code < 600 else Outcome.DEFERRED
            for rcpt in accepted:
                results[rcpt] = RecipientResult(rcpt, outcome, f"{exc.code} {exc.message}", tls)
            return [results[r] for r in job.recipients]
        for rcpt in accepted:
            results[rcpt] = RecipientResult(rcpt, Outcome.DELIVERED, f"{response.code} {response.message}", tls)
        return [results[r] for r in job.recipients]

    def _rejected_all(self, job: DeliveryJob, exc: aiosmtplib.SMTPResponseException,
                      tls: TlsSession, stage: str) -> list[RecipientResult]:
        outcome = Outcome.BOUNCED if 500 <= exc.code < 600 else Outcome.DEFERRED
        return [RecipientResult(r, outcome, f"{exc.code} {exc.message} (at {stage})", tls) for r in job.recipients]


class _PlaintextRetry(Exception):
    pass


def split_by_domain(recipients: Sequence[str]) -> dict[str, list[str]]:
    """One SMTP transaction per domain (RFC 5321 §3.3: several RCPTs per transaction)."""
    groups: dict[str, list[str]] = {}
    for rcpt in recipients:
        groups.setdefault(rcpt.rpartition("@")[2].lower(), []).append(rcpt)
    return groups
