"""MX resolution against a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import time

from tlsprobe.mx import MxStatus, make_resolver, resolve_mx


def _resolve(dns_lab, domain: str, timeout: float = 2.0):
    resolver = make_resolver([("127.0.0.1", dns_lab.port)], timeout)
    return asyncio.run(resolve_mx(resolver, domain))


def test_mx_hosts_come_in_preference_order(dns_lab):
    dns_lab.zone.mail_domain("order.test", [(20, "b.order.test", "127.0.0.3"), (10, "a.order.test", "127.0.0.2")])
    answer = _resolve(dns_lab, "order.test")
    assert answer.status is MxStatus.OK
    assert [h.name for h in answer.hosts] == ["a.order.test", "b.order.test"]
    assert answer.hosts[0].addresses == ("127.0.0.2",)


def test_null_mx_is_a_permanent_refusal(dns_lab):
    dns_lab.zone.add("nullmx.test", "MX", "0 .")
    answer = _resolve(dns_lab, "nullmx.test")
    assert answer.status is MxStatus.NULL_MX and answer.permanent_failure


def test_no_mx_falls_back_to_the_domains_address(dns_lab):
    dns_lab.zone.add("implicit.test", "A", "127.0.0.9")
    answer = _resolve(dns_lab, "implicit.test")
    assert answer.status is MxStatus.OK
    assert answer.hosts[0].implicit and answer.hosts[0].addresses == ("127.0.0.9",)


def test_nxdomain_is_permanent(dns_lab):
    answer = _resolve(dns_lab, "does-not-exist.test")
    assert answer.status is MxStatus.NO_DOMAIN and answer.permanent_failure


def test_servfail_is_temporary_not_an_answer(dns_lab):
    dns_lab.zone.fail("broken.test")
    answer = _resolve(dns_lab, "broken.test")
    assert answer.status is MxStatus.TEMPORARY and not answer.permanent_failure


def test_timeout_is_temporary(dns_lab):
    dns_lab.zone.hang("slow.test")
    answer = _resolve(dns_lab, "slow.test", timeout=0.5)
    assert answer.status is MxStatus.TEMPORARY


def test_mx_host_whose_address_lookup_fails_is_temporary(dns_lab):
    dns_lab.zone.add("halfbroken.test", "MX", "10 mx.halfbroken.test.")
    dns_lab.zone.fail("mx.halfbroken.test")
    answer = _resolve(dns_lab, "halfbroken.test")
    assert answer.status is MxStatus.TEMPORARY


def test_a_complete_answer_may_be_reused_for_as_long_as_its_records_live(dns_lab):
    # the lab's records have a TTL of 60 s
    dns_lab.zone.mail_domain("ttl.test", [(10, "mx.ttl.test", "127.0.0.2")])
    before = time.time()
    answer = _resolve(dns_lab, "ttl.test")
    assert answer.status is MxStatus.OK
    assert before + 50 < answer.expires <= time.time() + 60


def test_an_answer_with_an_unresolvable_mx_is_not_reused(dns_lab):
    dns_lab.zone.mail_domain("half.test", [(10, "good.half.test", "127.0.0.2")])
    dns_lab.zone.add("half.test", "MX", "20 broken.half.test.")
    dns_lab.zone.add("broken.half.test", "TXT", "exists")
    dns_lab.zone.fail("broken.half.test")
    answer = _resolve(dns_lab, "half.test")
    assert answer.status is MxStatus.OK and [h.name for h in answer.hosts] == ["good.half.test"]
    assert answer.expires == 0.0


def test_failures_carry_no_expiry(dns_lab):
    dns_lab.zone.add("sf.test", "TXT", "exists")
    dns_lab.zone.fail("sf.test")
    assert _resolve(dns_lab, "sf.test").expires == 0.0
    assert _resolve(dns_lab, "no-such-domain.test").expires == 0.0
