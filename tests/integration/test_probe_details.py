"""Smaller promises of tlsprobe, against the real DNS lab, MX servers and HTTPS policy server:
each configured name server keeps its own port; an MX without an address is permanent
whatever its name says; a grade resting on an MTA-STS policy expires with that policy."""

from __future__ import annotations

import asyncio
import socket

from tests.integration.test_probe_grades import make_prober
from tlsprobe import Grade, ProbeCache
from tlsprobe.mx import MxStatus, make_resolver, resolve_mx


def _closed_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])  # closed again on return: nothing answers there


def test_each_name_server_is_asked_on_its_own_port(dns_lab):
    dns_lab.zone.mail_domain("ports.test", [(10, "mx.ports.test", "127.0.0.7")])
    dead = ("127.0.9.9", _closed_udp_port("127.0.9.9"))
    resolver = make_resolver([dead, ("127.0.0.1", dns_lab.port)], 3.0)
    answer = asyncio.run(resolve_mx(resolver, "ports.test"))
    assert answer.status is MxStatus.OK, answer.reason
    assert answer.hosts[0].addresses == ("127.0.0.7",)


def test_an_mx_without_an_address_is_permanent_even_when_its_name_says_failed(dns_lab):
    dns_lab.zone.add("noaddr.test", "MX", "10 failed.noaddr.test.")
    resolver = make_resolver([("127.0.0.1", dns_lab.port)], 2.0)
    answer = asyncio.run(resolve_mx(resolver, "noaddr.test"))
    assert answer.status is MxStatus.NO_ADDRESS and answer.permanent_failure, answer.reason


def test_a_cached_grade_expires_with_the_mta_sts_policy_it_rests_on(dns_lab, tls_lab, tmp_path):
    server = tls_lab.mx("tls13")
    domain = tls_lab.mail_domain("short-policy.test", [server])
    tls_lab.mta_sts.publish(domain, mode="enforce", mx=(server.name,), max_age=600, policy_id="m1")
    now = [1_900_000_000.0]
    cache = ProbeCache(tmp_path / "probe.db")
    prober = make_prober(dns_lab, tls_lab, cache=cache, cache_ttl=86400.0, clock=lambda: now[0])

    async def go():
        try:
            first = await prober.grade(domain)
            assert first.grade is Grade.VERIFIED and first.mta_sts_enforced
            now[0] += 300  # within max_age: the cached grade serves
            assert (await prober.grade(domain)).from_cache
            now[0] += 400  # past max_age, well within probe_cache_ttl: probed again
            again = await prober.grade(domain)
            assert not again.from_cache
        finally:
            await prober.close()

    asyncio.run(go())
