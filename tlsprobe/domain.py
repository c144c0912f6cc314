"""A recipient domain's TLS grade: resolve MX, probe each, combine, cache.

How several MX hosts combine: the domain's grade is the *weakest* among the MX
hosts that answered and that delivery may use (an MTA-STS `enforce` policy
removes the others), because a delivery may end up at any of them. An MX that
could not be reached does not lower the grade (it says nothing about TLS), but
when none answers, the grade is UNKNOWN (temporary), never "none".
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

import dns.asyncresolver

from tlsprobe.cache import CacheError, ProbeCache
from tlsprobe.mtasts import MtaStsError, fetch_policy_text, lookup_txt, parse_policy
from tlsprobe.mx import MxStatus, resolve_mx
from tlsprobe.results import DomainStatus, DomainTls, Grade, MtaStsMode, MtaStsPolicy, MxProbe
from tlsprobe.starttls import MxProber, ProbeSettings
from tlsprobe.tls import client_tls_context

_T = TypeVar("_T")

MAX_ADDRESSES = 16  # MX addresses probed per domain; more is a misconfiguration or an attack
# Delivery asks for the domain's MTA-STS policy for every message (RFC 8461 §5 applies to
# all mail, not only to mail that was probed). A policy that was just looked up is reused
# for this long, so a burst of public mail to one domain costs one TXT lookup, not one each.
POLICY_RECHECK_SECONDS = 60.0
MAX_POLICY_MEMO = 10_000  # domains; older entries are dropped when it fills


def combine(domain: str, probes: tuple[MxProbe, ...], policy: MtaStsPolicy | None,
            probed_at: float) -> DomainTls:
    """The domain's grade from its MX probes (see the module docstring)."""
    enforce = policy is not None and policy.mode is MtaStsMode.ENFORCE
    usable = [p for p in probes if p.reachable and (not enforce or policy is None or policy.permits(p.name))]
    notes: list[str] = []
    if policy is not None:
        notes.append(f"MTA-STS {policy.mode.value} (id {policy.policy_id}, {policy.source}): "
                     f"mx {', '.join(policy.mx) or '-'}")
        if enforce:
            excluded = sorted({p.name for p in probes if not policy.permits(p.name)})
            if excluded:
                notes.append(f"not permitted by the policy: {', '.join(excluded)}")
    unreachable = [p for p in probes if not p.reachable]
    if unreachable:
        notes.append("unreachable (not counted): " + ", ".join(f"{p.name} [{p.address}]" for p in unreachable))
    if not usable:
        if enforce and any(p.reachable for p in probes):
            reason = "no reachable MX host is permitted by the MTA-STS enforce policy"
            return DomainTls(domain, DomainStatus.GRADED, Grade.NONE, "; ".join([reason, *notes]),
                             probes, policy, probed_at)
        reason = "no MX host could be probed: " + "; ".join(p.reason for p in probes)
        return DomainTls(domain, DomainStatus.UNKNOWN, None, reason, probes, policy, probed_at)
    weakest = min(usable, key=lambda p: p.grade.rank if p.grade else 0)
    grade = weakest.grade or Grade.NONE
    if all(p.grade is grade for p in usable):
        summary = f"{grade.value}: all {len(usable)} reachable MX address(es) agree"
    else:
        summary = f"{grade.value}: weakest reachable MX is {weakest.reason}"
    if grade is Grade.UNVERIFIED and enforce:
        # RFC 8461 §4.2: under enforce every delivery needs a certificate valid for the MX
        # name, so an MX that only encrypts can take no mail at all; grading it "none" holds
        # protected mail at once instead of trying tls-enforced until max_age
        grade = Grade.NONE
        summary = (f"none: the MTA-STS enforce policy requires a certificate valid for the MX name "
                   f"(RFC 8461 §4.2), and the weakest permitted MX has none: {weakest.reason}")
    if grade is Grade.VERIFIED and enforce:
        summary += " (MX names authenticated by MTA-STS enforce)"
    details = [summary] + [p.reason for p in usable] + notes
    return DomainTls(domain, DomainStatus.GRADED, grade, "; ".join(details), probes, policy, probed_at)


class DomainProber:
    """Grades recipient domains; one per gateway process, shared by every delivery."""

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        settings: ProbeSettings,
        *,
        cache: ProbeCache | None = None,
        cache_ttl: float = 86400.0,
        failure_ttl: float = 300.0,
        mta_sts_port: int = 443,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resolver = resolver
        self.settings = settings
        self.cache = cache
        self.cache_ttl = cache_ttl
        # UNKNOWN results (DNS trouble, all MX down) are probed again sooner: they are
        # usually transient and confidential mail waits on them
        self.failure_ttl = min(failure_ttl, cache_ttl)
        self.mta_sts_port = mta_sts_port
        self.clock = clock
        self._mx = MxProber(settings)
        self._https = client_tls_context(min_version="TLSv1.2", ca_file=settings.ca_file, verify=True)
        self._inflight: dict[str, asyncio.Task[DomainTls]] = {}
        self._policy_memo: dict[str, tuple[float, MtaStsPolicy | None, str]] = {}
        self._settings_key = hashlib.sha256(
            f"{settings.port}|{settings.min_version}|{settings.ca_file or ''}".encode()
        ).hexdigest()[:16]

    async def grade(self, domain: str, *, refresh: bool = False) -> DomainTls:
        domain = domain.strip().rstrip(".").lower()
        if not refresh:
            cached = await self._cached(self._cache_get_grade, domain)
            if cached is not None:
                return cached
        task = self._inflight.get(domain)
        if task is None:
            # concurrent callers for one domain share one probe (one set of connections)
            task = asyncio.get_running_loop().create_task(self._probe_and_store(domain))
            self._inflight[domain] = task
            task.add_done_callback(self._forget)
        return await asyncio.shield(task)

    def _forget(self, task: asyncio.Task[DomainTls]) -> None:
        for domain, running in list(self._inflight.items()):
            if running is task:
                del self._inflight[domain]

    async def _probe_and_store(self, domain: str) -> DomainTls:
        result = await self._probe(domain)
        ttl = self.cache_ttl if result.status is not DomainStatus.UNKNOWN else self.failure_ttl
        expires_at = result.probed_at + ttl
        if result.mta_sts is not None:
            # RFC 8461 §3.2/§5.1: the policy is only valid for max_age after it was fetched; a
            # grade resting on it (its MX restriction, "verified via MTA-STS") must not outlive it
            expires_at = min(expires_at, result.mta_sts.fetched_at + result.mta_sts.max_age)
        await self._cached(self._cache_put_grade, result, expires_at)
        return result

    # The cache runs in a worker thread (a PostgreSQL round trip must not stall the
    # loop). Its failure is not the domain's: a read is a miss, a write is skipped.
    async def _cached(self, call: Callable[..., _T], *args: Any) -> _T | None:
        if self.cache is None:
            return None
        try:
            return await asyncio.to_thread(call, *args)
        except CacheError:
            return None

    def _cache_get_grade(self, domain: str) -> DomainTls | None:
        assert self.cache is not None
        return self.cache.get_grade(domain, self._settings_key, self.clock())

    def _cache_put_grade(self, result: DomainTls, expires_at: float) -> None:
        assert self.cache is not None
        self.cache.put_grade(result, self._settings_key, expires_at)

    def _cache_get_policy(self, domain: str) -> MtaStsPolicy | None:
        assert self.cache is not None
        return self.cache.get_policy(domain, self.clock())

    def _cache_put_policy(self, domain: str, policy: MtaStsPolicy) -> None:
        assert self.cache is not None
        self.cache.put_policy(domain, policy)

    async def _probe(self, domain: str) -> DomainTls:
        started = self.clock()
        answer, policy_result = await asyncio.gather(
            resolve_mx(self.resolver, domain), self._mta_sts(domain))
        policy, policy_note = policy_result
        if answer.status is MxStatus.TEMPORARY:
            return DomainTls(domain, DomainStatus.UNKNOWN, None,
                             f"MX lookup failed (temporary): {answer.reason}", (), policy, started)
        if answer.permanent_failure:
            return DomainTls(domain, DomainStatus.NO_MX, None, answer.reason, (), policy, started)
        targets = [(host.name, address, host.preference)
                   for host in answer.hosts for address in host.addresses][:MAX_ADDRESSES]
        probes = tuple(await asyncio.gather(*(self._mx.probe(*t) for t in targets)))
        result = combine(domain, probes, policy, started)
        if policy_note:
            result = DomainTls(result.domain, result.status, result.grade,
                               f"{result.reason}; {policy_note}", result.mx, result.mta_sts,
                               result.probed_at)
        return result

    async def mta_sts_policy(self, domain: str) -> tuple[MtaStsPolicy | None, str]:
        """The MTA-STS policy that applies to a delivery now, without probing the MX hosts.

        As `_mta_sts`: a cached unexpired policy keeps applying when DNS or the fetch fails
        (the note then says so); (None, "") means the domain has no policy (an answer).
        """
        domain = domain.strip().rstrip(".").lower()
        now = self.clock()
        memo = self._policy_memo.get(domain)
        if memo is not None and now - memo[0] < POLICY_RECHECK_SECONDS:
            _, policy, note = memo
            if policy is None or now < policy.fetched_at + policy.max_age:
                return policy, note
        # failures are remembered too: a domain whose policy host hangs must not cost every
        # delivery a fetch timeout (protected mail waits on an unknown either way)
        policy, note = await self._mta_sts(domain)
        if len(self._policy_memo) >= MAX_POLICY_MEMO:
            self._policy_memo = {d: m for d, m in self._policy_memo.items()
                                 if now - m[0] < POLICY_RECHECK_SECONDS}
        self._policy_memo[domain] = (now, policy, note)
        return policy, note

    async def cached_policy(self, domain: str) -> MtaStsPolicy | None:
        """The unexpired policy in the persistent cache, without any network (RFC 8461 §5.1)."""
        return _from_cache(await self._cached(self._cache_get_policy, domain.strip().rstrip(".").lower()))

    async def _mta_sts(self, domain: str) -> tuple[MtaStsPolicy | None, str]:
        """The policy that applies now, and a note when something went wrong.

        RFC 8461 §5.1: a cached, unexpired policy keeps applying when the TXT lookup
        or the fetch fails, and when the TXT record has gone (only a new fetched
        policy, e.g. mode none, replaces it).
        """
        now = self.clock()
        cached = await self._cached(self._cache_get_policy, domain)
        try:
            txt = await lookup_txt(self.resolver, domain)
        except MtaStsError as exc:
            return _from_cache(cached), f"MTA-STS: {exc}" + ("; using cached policy" if cached else "")
        if txt is None:
            return _from_cache(cached), ""
        if cached is not None and cached.policy_id == txt.policy_id:
            return _from_cache(cached), ""
        try:
            text = await fetch_policy_text(self.resolver, domain, port=self.mta_sts_port,
                                           context=self._https, time_limit=self.settings.timeout)
            policy = parse_policy(text, policy_id=txt.policy_id, fetched_at=now)
        except MtaStsError as exc:
            return _from_cache(cached), f"MTA-STS policy fetch failed: {exc}" + (
                "; using cached policy" if cached else "")
        await self._cached(self._cache_put_policy, domain, policy)
        return policy, ""

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        if self.cache is not None:
            await asyncio.to_thread(self.cache.close)


def _from_cache(policy: MtaStsPolicy | None) -> MtaStsPolicy | None:
    if policy is None:
        return None
    return MtaStsPolicy(policy.mode, policy.mx, policy.max_age, policy.policy_id,
                        policy.fetched_at, source="cache")
