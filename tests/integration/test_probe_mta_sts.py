"""MTA-STS (RFC 8461) against a real HTTPS server on loopback and the DNS lab."""

from __future__ import annotations

import asyncio

from tests.integration.test_probe_grades import grade, make_prober
from tlsprobe import DomainStatus, Grade, MtaStsMode, ProbeCache


def test_enforce_policy_with_matching_mx_is_verified_via_mta_sts(dns_lab, tls_lab):
    server = tls_lab.mx("tls13")
    domain = tls_lab.mail_domain("s-match.test", [server])
    tls_lab.mta_sts.publish(domain, mode="enforce", mx=("*.tlslab.test",), max_age=600, policy_id="a1")
    result = grade(make_prober(dns_lab, tls_lab), domain)
    assert result.status is DomainStatus.GRADED and result.grade is Grade.VERIFIED
    assert result.mta_sts is not None and result.mta_sts.mode is MtaStsMode.ENFORCE
    assert result.mta_sts.mx == ("*.tlslab.test",) and result.mta_sts.max_age == 600
    assert result.mta_sts.policy_id == "a1" and result.mta_sts_enforced
    assert result.mx_allowed(server.name) and not result.mx_allowed("mx.elsewhere.test")
    assert (f"mta-sts.{domain}", "/.well-known/mta-sts.txt") in tls_lab.mta_sts.requests


def test_enforce_policy_without_matching_mx_permits_no_mx(dns_lab, tls_lab):
    server = tls_lab.mx("tls13")
    domain = tls_lab.mail_domain("s-nomatch.test", [server])
    tls_lab.mta_sts.publish(domain, mode="enforce", mx=("mail.s-nomatch.test",))
    result = grade(make_prober(dns_lab, tls_lab), domain)
    assert result.status is DomainStatus.GRADED and result.grade is Grade.NONE
    assert not result.mx_allowed(server.name) and not result.mta_sts_enforced
    assert "no reachable MX host is permitted by the MTA-STS enforce policy" in result.reason


def test_enforce_policy_leaves_out_mx_hosts_it_does_not_name(dns_lab, tls_lab):
    good, bad = tls_lab.mx("tls13"), tls_lab.mx("selfsigned")
    domain = tls_lab.mail_domain("s-narrow.test", [good, bad])
    tls_lab.mta_sts.publish(domain, mode="enforce", mx=(good.name,))
    result = grade(make_prober(dns_lab, tls_lab), domain)
    assert result.grade is Grade.VERIFIED and result.mta_sts_enforced
    assert result.mx_allowed(good.name) and not result.mx_allowed(bad.name)
    assert f"not permitted by the policy: {bad.name}" in result.reason


def test_testing_mode_restricts_nothing(dns_lab, tls_lab):
    good, bad = tls_lab.mx("tls13"), tls_lab.mx("selfsigned")
    domain = tls_lab.mail_domain("s-testing.test", [good, bad])
    tls_lab.mta_sts.publish(domain, mode="testing", mx=(good.name,))
    result = grade(make_prober(dns_lab, tls_lab), domain)
    assert result.mta_sts is not None and result.mta_sts.mode is MtaStsMode.TESTING
    assert result.grade is Grade.UNVERIFIED and result.mx_allowed(bad.name)


def test_redirect_is_not_followed(dns_lab, tls_lab):
    domain = tls_lab.mail_domain("s-redirect.test", [tls_lab.mx("selfsigned")])
    tls_lab.mta_sts.publish(domain, status=301, location="https://mta-sts.s-match.test/.well-known/mta-sts.txt")
    result = grade(make_prober(dns_lab, tls_lab), domain)
    assert result.mta_sts is None and "redirect, not followed" in result.reason
    assert result.grade is Grade.UNVERIFIED


def test_policy_that_is_not_text_plain_or_too_large_is_rejected(dns_lab, tls_lab):
    html = tls_lab.mail_domain("s-html.test", [tls_lab.mx("tls13")])
    tls_lab.mta_sts.publish(html, mx=("*.tlslab.test",), content_type="text/html")
    huge = tls_lab.mail_domain("s-huge.test", [tls_lab.mx("tls13")])
    body = b"version: STSv1\r\nmode: enforce\r\nmx: *.tlslab.test\r\nmax_age: 600\r\n" + b"x: y\r\n" * 20000
    tls_lab.mta_sts.publish(huge, body=body)
    assert "not text/plain" in grade(make_prober(dns_lab, tls_lab), html).reason
    result = grade(make_prober(dns_lab, tls_lab), huge)
    assert result.mta_sts is None and "larger than 65536 bytes" in result.reason


def test_cached_policy_still_applies_when_the_fetch_fails(dns_lab, tls_lab, tmp_path):
    good, bad = tls_lab.mx("tls13"), tls_lab.mx("selfsigned")
    domain = tls_lab.mail_domain("s-cached.test", [good, bad])
    tls_lab.mta_sts.publish(domain, mode="enforce", mx=(good.name,), max_age=86400, policy_id="v1")
    cache = ProbeCache(tmp_path / "p.db")
    assert grade(make_prober(dns_lab, tls_lab, cache=cache), domain).mta_sts_enforced
    # a new policy id is announced, but its fetch fails: the cached enforce policy stays in force
    tls_lab.mta_sts.publish(domain, mode="none", policy_id="v2")
    tls_lab.mta_sts.withdraw_policy(domain)
    result = grade(make_prober(dns_lab, tls_lab, cache=ProbeCache(tmp_path / "p.db")), domain, refresh=True)
    assert result.mta_sts is not None and result.mta_sts.source == "cache"
    assert result.mta_sts.policy_id == "v1" and result.mta_sts.mode is MtaStsMode.ENFORCE
    assert "HTTP 404" in result.reason and "using cached policy" in result.reason
    assert result.grade is Grade.VERIFIED and not result.mx_allowed(bad.name)


def test_unchanged_policy_id_is_not_fetched_again(dns_lab, tls_lab, tmp_path):
    domain = tls_lab.mail_domain("s-sameid.test", [tls_lab.mx("tls13")])
    tls_lab.mta_sts.publish(domain, mx=("*.tlslab.test",), policy_id="same")
    path = tmp_path / "p.db"
    grade(make_prober(dns_lab, tls_lab, cache=ProbeCache(path)), domain)
    before = len([r for r in tls_lab.mta_sts.requests if r[0] == f"mta-sts.{domain}"])
    again = grade(make_prober(dns_lab, tls_lab, cache=ProbeCache(path)), domain, refresh=True)
    after = len([r for r in tls_lab.mta_sts.requests if r[0] == f"mta-sts.{domain}"])
    assert (before, after) == (1, 1) and again.mta_sts is not None and again.mta_sts.source == "cache"


def test_mta_sts_txt_servfail_does_not_make_the_grade_unknown(dns_lab, tls_lab):
    domain = tls_lab.mail_domain("s-txtfail.test", [tls_lab.mx("tls13")])
    dns_lab.zone.fail(f"_mta-sts.{domain}")
    result = grade(make_prober(dns_lab, tls_lab), domain)
    assert result.grade is Grade.VERIFIED and result.mta_sts is None
    assert "TXT lookup" in result.reason


def test_concurrent_grades_with_policy_fetch_once(dns_lab, tls_lab):
    domain = tls_lab.mail_domain("s-once.test", [tls_lab.mx("tls13")])
    tls_lab.mta_sts.publish(domain, mx=("*.tlslab.test",))
    prober = make_prober(dns_lab, tls_lab)

    async def go():
        try:
            return await asyncio.gather(*(prober.grade(domain) for _ in range(3)))
        finally:
            await prober.close()
    results = asyncio.run(go())
    assert all(r.mta_sts_enforced for r in results)
    assert len([r for r in tls_lab.mta_sts.requests if r[0] == f"mta-sts.{domain}"]) == 1


def test_policy_host_with_an_untrusted_certificate_gives_no_policy(dns_lab, tls_lab):
    from tlsprobe import DomainProber, ProbeSettings
    from tlsprobe.mx import make_resolver

    domain = tls_lab.mail_domain("s-untrusted.test", [tls_lab.mx("tls13")])
    tls_lab.mta_sts.publish(domain, mx=("*.tlslab.test",))
    prober = DomainProber(make_resolver([("127.0.0.1", dns_lab.port)], 1.0),
                          ProbeSettings(port=tls_lab.port, ca_file=None, timeout=3.0),
                          mta_sts_port=tls_lab.https_port)
    result = grade(prober, domain)
    assert result.mta_sts is None and not result.mta_sts_enforced
    assert f"https://mta-sts.{domain}: certificate not valid" in result.reason
