"""MTA-STS (RFC 8461): the `_mta-sts` TXT record and the HTTPS policy it announces.

The policy is what authenticates the MX names themselves (DNS alone can be
spoofed), so its fetch is strict: valid certificate for `mta-sts.<domain>`, a
200 answer (redirects are not followed, §3.3), text/plain, a size cap.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from tlsprobe.results import MtaStsMode, MtaStsPolicy, ProbeError

MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3: senders may cap the body at 64 KiB
MAX_AGE_LIMIT = 31_557_600  # §3.2: one year
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


class MtaStsError(ProbeError):
    """The TXT record or the policy could not be had or was invalid."""


@dataclass(frozen=True)
class TxtRecord:
    policy_id: str


async def lookup_txt(resolver: dns.asyncresolver.Resolver, domain: str) -> TxtRecord | None:
    """The `_mta-sts` TXT record; None when the domain publishes none (an answer).

    Raises MtaStsError when DNS fails (an unknown: the cached policy keeps applying).
    """
    name = f"_mta-sts.{domain}"
    try:
        answer = await resolver.resolve(name, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.exception.DNSException as exc:
        raise MtaStsError(f"TXT lookup for {name} failed: {type(exc).__name__}")
    records = []
    for rdata in answer:
        text = b"".join(rdata.strings).decode("ascii", "replace")
        if text.startswith("v=STSv1"):
            records.append(text)
    if len(records) != 1:
        # §3.1: several STSv1 records are treated as no policy
        return None
    fields = dict(_split_field(part) for part in records[0].split(";") if part.strip())
    policy_id = fields.get("id", "")
    if not _ID.match(policy_id):
        return None
    return TxtRecord(policy_id)


def _split_field(part: str) -> tuple[str, str]:
    key, _, value = part.strip().partition("=")
    return key.strip(), value.strip()


def parse_policy(text: str, *, policy_id: str, fetched_at: float) -> MtaStsPolicy:
    """The policy body (§3.2): "key: value" lines; unknown keys are ignored."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise MtaStsError(f"policy line is not key: value: {line[:60]!r}")
        values.setdefault(key.strip().lower(), []).append(value.strip())
    if values.get("version") != ["STSv1"]:
        raise MtaStsError("policy version is not STSv1")
    try:
        mode = MtaStsMode(values.get("mode", [""])[0])
    except ValueError:
        raise MtaStsError(f"policy mode is not enforce/testing/none: {values.get('mode')}")
    try:
        max_age = int(values.get("max_age", [""])[0])
    except ValueError:
        raise MtaStsError("policy max_age is not a number")
    if not 0 <= max_age <= MAX_AGE_LIMIT:
        raise MtaStsError(f"policy max_age out of range: {max_age}")
    mx = tuple(p.lower().rstrip(".") for p in values.get("mx", []))
    if mode is not MtaStsMode.NONE and not mx:
        raise MtaStsError("policy has no mx patterns")
    return MtaStsPolicy(mode, mx, max_age, policy_id, fetched_at)


async def fetch_policy_text(resolver: dns.asyncresolver.Resolver, domain: str, *, port: int,
                            context: ssl.SSLContext, time_limit: float) -> str:
    """GET https://mta-sts.<domain>/.well-known/mta-sts.txt, strictly."""
    host = f"mta-sts.{domain}"
    try:
        answer = await resolver.resolve(host, "A", search=False)
        address = str(next(iter(answer)))
    except dns.exception.DNSException as exc:
        raise MtaStsError(f"cannot resolve {host}: {type(exc).__name__}")
    try:
        return await asyncio.wait_for(_get(host, address, port, context), time_limit)
    except TimeoutError:
        raise MtaStsError(f"https://{host}: no answer within {time_limit:g}s")
    except ssl.SSLCertVerificationError as exc:
        raise MtaStsError(f"https://{host}: certificate not valid: {exc.verify_message}")
    except OSError as exc:
        raise MtaStsError(f"https://{host}: {exc}")


async def _get(host: str, address: str, port: int, context: ssl.SSLContext) -> str:
    reader, writer = await asyncio.open_connection(address, port, ssl=context, server_hostname=host)
    try:
        # HTTP/1.0: the answer ends at EOF, no chunked encoding to decode
        writer.write(
            f"GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\n"
            f"User-Agent: sikkermail-mta-sts\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        await writer.drain()
        raw = await reader.read(MAX_POLICY_BYTES + 8192)
        while len(raw) <= MAX_POLICY_BYTES + 8192:
            more = await reader.read(65536)
            if not more:
                break
            raw += more
    finally:
        writer.close()
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise MtaStsError(f"https://{host}: incomplete HTTP answer")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise MtaStsError(f"https://{host}: not an HTTP answer")
    status = int(parts[1])
    if 300 <= status < 400:
        raise MtaStsError(f"https://{host}: HTTP {status} redirect, not followed (RFC 8461 §3.3)")
    if status != 200:
        raise MtaStsError(f"https://{host}: HTTP {status}")
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    if not headers.get("content-type", "").lower().startswith("text/plain"):
        raise MtaStsError(f"https://{host}: Content-Type is not text/plain")
    if len(body) > MAX_POLICY_BYTES:
        raise MtaStsError(f"https://{host}: policy larger than {MAX_POLICY_BYTES} bytes")
    return body.decode("utf-8", "replace")
