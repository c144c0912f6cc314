"""The persistent probe cache: TTLs, failures re-probed sooner, settings-aware, shared on disk."""

from __future__ import annotations

import asyncio

from tests.integration.test_probe_grades import make_prober
from tlsprobe import DomainStatus, Grade, ProbeCache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def run_grade(prober, domain, **kw):
    return asyncio.run(prober.grade(domain, **kw))


def test_cached_grade_is_served_without_connecting(dns_lab, tls_lab, tmp_path):
    server = tls_lab.start("tls13")
    domain = tls_lab.mail_domain("c-hit.test", [server])
    clock = Clock()
    prober = make_prober(dns_lab, tls_lab, cache=ProbeCache(tmp_path / "p.db"), clock=clock, cache_ttl=3600)
    first = run_grade(prober, domain)
    clock.now += 3599
    second = run_grade(prober, domain)
    assert first.grade is second.grade is Grade.VERIFIED
    assert not first.from_cache and second.from_cache
    assert second.mx == first.mx and second.probed_at == first.probed_at
    assert server.connections == 1


def test_cached_grade_expires_after_the_ttl(dns_lab, tls_lab, tmp_path):
    server = tls_lab.start("tls13")
    domain = tls_lab.mail_domain("c-expire.test", [server])
    clock = Clock()
    prober = make_prober(dns_lab, tls_lab, cache=ProbeCache(tmp_path / "p.db"), clock=clock, cache_ttl=3600)
    run_grade(prober, domain)
    clock.now += 3601
    again = run_grade(prober, domain)
    assert not again.from_cache and server.connections == 2


def test_refresh_probes_again_and_updates_the_cache(dns_lab, tls_lab, tmp_path):
    server = tls_lab.start("tls13")
    domain = tls_lab.mail_domain("c-refresh.test", [server])
    prober = make_prober(dns_lab, tls_lab, cache=ProbeCache(tmp_path / "p.db"))
    assert run_grade(prober, domain).grade is Grade.VERIFIED
    server.advertise_starttls = False
    refreshed = run_grade(prober, domain, refresh=True)
    assert refreshed.grade is Grade.NONE and not refreshed.from_cache
    assert run_grade(prober, domain).grade is Grade.NONE  # the refreshed grade is what is cached
    assert server.connections == 2


def test_unknown_grade_is_reprobed_sooner_than_a_graded_one(dns_lab, tls_lab, tmp_path):
    server = tls_lab.start("tls13")
    dns_lab.zone.fail("c-failure.test")
    clock = Clock()
    prober = make_prober(dns_lab, tls_lab, cache=ProbeCache(tmp_path / "p.db"), clock=clock,
                         cache_ttl=3600, failure_ttl=60)
    assert run_grade(prober, "c-failure.test").status is DomainStatus.UNKNOWN
    dns_lab.zone.remove("c-failure.test")
    tls_lab.mail_domain("c-failure.test", [server])
    clock.now += 30
    assert run_grade(prober, "c-failure.test").status is DomainStatus.UNKNOWN  # still the cached unknown
    clock.now += 31
    fixed = run_grade(prober, "c-failure.test")
    assert fixed.status is DomainStatus.GRADED and fixed.grade is Grade.VERIFIED


def test_cache_persists_across_processes(dns_lab, tls_lab, tmp_path):
    server = tls_lab.start("tls13")
    domain = tls_lab.mail_domain("c-persist.test", [server])
    path = tmp_path / "p.db"
    first = make_prober(dns_lab, tls_lab, cache=ProbeCache(path))
    run_grade(first, domain)
    asyncio.run(first.close())
    second = make_prober(dns_lab, tls_lab, cache=ProbeCache(path))
    again = run_grade(second, domain)
    asyncio.run(second.close())
    assert again.from_cache and again.grade is Grade.VERIFIED
    assert server.connections == 1


def test_grade_cached_under_other_settings_is_not_reused(dns_lab, tls_lab, tmp_path):
    """A grade measured with minimum TLS 1.2 says nothing about a TLS 1.3 minimum."""
    domain = tls_lab.mail_domain("c-settings.test", [tls_lab.mx("tls12")])
    path = tmp_path / "p.db"
    assert run_grade(make_prober(dns_lab, tls_lab, cache=ProbeCache(path)), domain).grade is Grade.VERIFIED
    strict = run_grade(make_prober(dns_lab, tls_lab, cache=ProbeCache(path), min_version="TLSv1.3"), domain)
    assert strict.grade is Grade.NONE and not strict.from_cache


class BrokenCache(ProbeCache):
    """A cache whose database has gone away after start-up."""

    def _run(self, sql, params):
        from tlsprobe.cache import CacheError
        raise CacheError("database is gone")


def test_a_failing_cache_is_a_miss_not_a_failed_grade(dns_lab, tls_lab, tmp_path):
    server = tls_lab.start("tls13")
    domain = tls_lab.mail_domain("c-broken.test", [server])
    prober = make_prober(dns_lab, tls_lab, cache=BrokenCache(tmp_path / "p.db"))
    assert run_grade(prober, domain).grade is Grade.VERIFIED
    assert run_grade(prober, domain).grade is Grade.VERIFIED
    assert server.connections == 2
