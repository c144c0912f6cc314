"""MX resolution (RFC 5321 §5.1, RFC 7505): which hosts receive mail for a domain.

An answer (MX hosts, no such domain, null MX) is a fact; a failure to get an
answer (SERVFAIL, timeout) is an unknown and must be treated as temporary,
never as "this domain has no mail servers" or "this domain has no TLS".
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver


class MxStatus(enum.StrEnum):
    OK = "ok"
    NO_DOMAIN = "no-domain"  # NXDOMAIN: permanent
    NULL_MX = "null-mx"  # RFC 7505 "0 .": the domain accepts no mail, permanent
    NO_ADDRESS = "no-address"  # no MX and no A/AAAA, or MX hosts with no address: permanent
    TEMPORARY = "temporary"  # SERVFAIL, timeout, refused: try again later


@dataclass(frozen=True)
class MxHost:
    name: str  # without the trailing dot, lower case
    preference: int
    addresses: tuple[str, ...]
    implicit: bool = False  # no MX record: the domain's own A/AAAA (RFC 5321 §5.1)


@dataclass(frozen=True)
class MxAnswer:
    domain: str
    status: MxStatus
    hosts: tuple[MxHost, ...]
    reason: str
    # time.time() until which every record behind this answer is within its TTL; 0: do not reuse
    expires: float = 0.0

    @property
    def permanent_failure(self) -> bool:
        return self.status in (MxStatus.NO_DOMAIN, MxStatus.NULL_MX, MxStatus.NO_ADDRESS)


# How long an answer built on a NODATA response may be reused (see _query).
NODATA_REUSE = 60.0


class _Temporary(Exception):
    pass


def make_resolver(nameservers: list[tuple[str, int]], timeout: float) -> dns.asyncresolver.Resolver:
    """A resolver for the configured name servers; empty: the system's."""
    if not nameservers:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        # each server with its own port ("[dns] nameservers" allows "host:port" per entry)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers]
    # `lifetime` bounds the whole lookup, `timeout` each server's try: with both equal, a
    # silent first server used the whole lifetime and the next was never asked
    resolver.lifetime = timeout
    resolver.timeout = timeout / max(1, len(resolver.nameservers))
    # dnspython's cache honours each answer's TTL; failures (SERVFAIL, timeouts) are not cached
    resolver.cache = dns.resolver.Cache()
    return resolver


async def _query(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str,
                 expirations: list[float] | None = None) -> list[object] | None:
    """Records of one type; None when the name exists with no such records (NODATA).
    Each answer's expiry goes into `expirations`."""
    try:
        answer = await resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NoAnswer:
        if expirations is not None:
            # RFC 2308 negative caching lasts the SOA's minimum, which we do not read: a short fixed bound
            expirations.append(time.time() + NODATA_REUSE)
        return None
    except dns.resolver.NXDOMAIN:
        raise
    except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
        raise _Temporary(f"{rdtype} lookup for {name} failed: {type(exc).__name__}") from exc
    except dns.exception.DNSException as exc:
        raise _Temporary(f"{rdtype} lookup for {name} failed: {exc}") from exc
    if expirations is not None:
        expirations.append(float(answer.expiration))
    return list(answer)


async def _addresses(resolver: dns.asyncresolver.Resolver, name: str,
                     expirations: list[float] | None = None) -> tuple[str, ...]:
    results = await asyncio.gather(
        _query(resolver, name, "A", expirations), _query(resolver, name, "AAAA", expirations),
        return_exceptions=True,
    )
    addresses: list[str] = []
    temporary: list[str] = []
    for result in results:
        if isinstance(result, _Temporary):
            temporary.append(str(result))
        elif isinstance(result, dns.resolver.NXDOMAIN):
            continue
        elif isinstance(result, BaseException):
            raise result
        elif result:
            addresses.extend(str(record) for record in result)
    if not addresses and temporary:
        raise _Temporary("; ".join(temporary))
    return tuple(addresses)


async def resolve_mx(resolver: dns.asyncresolver.Resolver, domain: str) -> MxAnswer:
    """The domain's MX hosts in preference order, each with its addresses."""
    domain = domain.rstrip(".").lower()
    expirations: list[float] = []
    try:
        records = await _query(resolver, domain, "MX", expirations)
    except dns.resolver.NXDOMAIN:
        return MxAnswer(domain, MxStatus.NO_DOMAIN, (), f"{domain}: no such domain (NXDOMAIN)")
    except _Temporary as exc:
        return MxAnswer(domain, MxStatus.TEMPORARY, (), str(exc))
    try:
        if records is None:
            addresses = await _addresses(resolver, domain, expirations)
            if not addresses:
                return MxAnswer(domain, MxStatus.NO_ADDRESS, (), f"{domain}: no MX and no A/AAAA")
            host = MxHost(domain, 0, addresses, implicit=True)
            return MxAnswer(domain, MxStatus.OK, (host,), f"{domain}: no MX, using its address",
                            expires=min(expirations))
        mx = sorted(
            ((int(r.preference), str(r.exchange).rstrip(".").lower()) for r in records),  # type: ignore[attr-defined]
            key=lambda item: item,
        )
        if any(name == "" for _, name in mx):
            return MxAnswer(domain, MxStatus.NULL_MX, (), f"{domain}: null MX, accepts no mail (RFC 7505)")
        resolved = await asyncio.gather(
            *(_addresses(resolver, name, expirations) for _, name in mx), return_exceptions=True
        )
    except _Temporary as exc:
        return MxAnswer(domain, MxStatus.TEMPORARY, (), str(exc))
    hosts: list[MxHost] = []
    problems: list[str] = []
    temporary = False  # any MX whose address lookup failed (not "has none"): unknown, not permanent
    for (preference, name), result in zip(mx, resolved, strict=True):
        if isinstance(result, _Temporary):
            problems.append(str(result))
            temporary = True
        elif isinstance(result, BaseException):
            raise result
        elif result:
            hosts.append(MxHost(name, preference, result))
        else:
            problems.append(f"MX {name} has no address")
    if hosts:
        # an answer with a host that could not be resolved this time is not one to reuse
        return MxAnswer(domain, MxStatus.OK, tuple(hosts), "; ".join(problems) or "MX found",
                        expires=0.0 if problems else min(expirations))
    if temporary:
        return MxAnswer(domain, MxStatus.TEMPORARY, (), "; ".join(problems))
    return MxAnswer(domain, MxStatus.NO_ADDRESS, (), "; ".join(problems) or f"{domain}: no MX address")


class MxMemo:
    """Complete MX answers kept for as long as DNS says they hold (each record's TTL).

    dnspython's cache answers the same, but its look-up path costs more Python per
    message than the delivery of a small message itself (bench/relay.py --profile).
    Only complete OK answers are kept; failures and temporary results never are.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._answers: dict[str, MxAnswer] = {}

    def get(self, domain: str, now: float | None = None) -> MxAnswer | None:
        answer = self._answers.get(domain)
        if answer is None:
            return None
        if answer.expires <= (time.time() if now is None else now):
            del self._answers[domain]
            return None
        return answer

    def put(self, answer: MxAnswer, now: float | None = None) -> None:
        if answer.status is not MxStatus.OK or answer.expires <= (time.time() if now is None else now):
            return
        if len(self._answers) >= self.capacity:
            self._answers.clear()  # a flood of one-off domains: start over rather than grow
        self._answers[answer.domain] = answer
