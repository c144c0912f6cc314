"""MX resolution (RFC 5321 §5.1, RFC 7505): which hosts receive mail for a domain.

An answer (MX hosts, no such domain, null MX) is a fact; a failure to get an
answer (SERVFAIL, timeout) is an unknown and must be treated as temporary,
never as "this domain has no mail servers" or "this domain has no TLS".
"""

from __future__ import annotations

import asyncio
import enum
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

    @property
    def permanent_failure(self) -> bool:
        return self.status in (MxStatus.NO_DOMAIN, MxStatus.NULL_MX, MxStatus.NO_ADDRESS)


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


async def _query(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> list[object] | None:
    """Records of one type; None when the name exists with no such records (NODATA)."""
    try:
        answer = await resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NoAnswer:
        return None
    except dns.resolver.NXDOMAIN:
        raise
    except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
        raise _Temporary(f"{rdtype} lookup for {name} failed: {type(exc).__name__}") from exc
    except dns.exception.DNSException as exc:
        raise _Temporary(f"{rdtype} lookup for {name} failed: {exc}") from exc
    return list(answer)


async def _addresses(resolver: dns.asyncresolver.Resolver, name: str) -> tuple[str, ...]:
    results = await asyncio.gather(
        _query(resolver, name, "A"), _query(resolver, name, "AAAA"), return_exceptions=True
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
    try:
        records = await _query(resolver, domain, "MX")
    except dns.resolver.NXDOMAIN:
        return MxAnswer(domain, MxStatus.NO_DOMAIN, (), f"{domain}: no such domain (NXDOMAIN)")
    except _Temporary as exc:
        return MxAnswer(domain, MxStatus.TEMPORARY, (), str(exc))
    try:
        if records is None:
            addresses = await _addresses(resolver, domain)
            if not addresses:
                return MxAnswer(domain, MxStatus.NO_ADDRESS, (), f"{domain}: no MX and no A/AAAA")
            host = MxHost(domain, 0, addresses, implicit=True)
            return MxAnswer(domain, MxStatus.OK, (host,), f"{domain}: no MX, using its address")
        mx = sorted(
            ((int(r.preference), str(r.exchange).rstrip(".").lower()) for r in records),  # type: ignore[attr-defined]
            key=lambda item: item,
        )
        if any(name == "" for _, name in mx):
            return MxAnswer(domain, MxStatus.NULL_MX, (), f"{domain}: null MX, accepts no mail (RFC 7505)")
        resolved = await asyncio.gather(
            *(_addresses(resolver, name) for _, name in mx), return_exceptions=True
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
        return MxAnswer(domain, MxStatus.OK, tuple(hosts), "; ".join(problems) or "MX found")
    if temporary:
        return MxAnswer(domain, MxStatus.TEMPORARY, (), "; ".join(problems))
    return MxAnswer(domain, MxStatus.NO_ADDRESS, (), "; ".join(problems) or f"{domain}: no MX address")
