"""Grading recipient domains against real MX servers (aiosmtpd with TLS) and a real DNS server."""

from __future__ import annotations

import asyncio

import pytest

from tlsprobe import DomainProber, DomainStatus, Grade, ProbeSettings
from tlsprobe.mx import make_resolver


def make_prober(dns_lab, tls_lab, *, min_version="TLSv1.2", dns_timeout=1.0, cache=None, timeout=3.0, **kw):
    resolver = make_resolver([("127.0.0.1", dns_lab.port)], dns_timeout)
    settings = ProbeSettings(port=tls_lab.port, min_version=min_version, ca_file=tls_lab.ca_file,
                             helo_name="probe.sikkermail.test", timeout=timeout)
    return DomainProber(resolver, settings, cache=cache, mta_sts_port=tls_lab.https_port, **kw)


def grade(prober, domain, **kw):
    async def go():
        try:
            return await prober.grade(domain, **kw)
        finally:
            await prober.close()
    return asyncio.run(go())


@pytest.fixture
def probe(dns_lab, tls_lab):
    """probe(domain, min_version=...) -> DomainTls, with a fresh prober and no cache."""
    def run(domain, **kw):
        return grade(make_prober(dns_lab, tls_lab, **kw), domain)
    return run


def test_valid_certificate_over_tls13_is_verified(tls_lab, probe):
    server = tls_lab.mx("tls13")
    result = probe(tls_lab.mail_domain("g-tls13.test", [server]))
    assert result.status is DomainStatus.GRADED and result.grade is Grade.VERIFIED
    (mx,) = result.mx
    assert (mx.name, mx.address, mx.starttls) == (server.name, server.address, True)
    assert mx.tls_version == "TLSv1.3" and mx.cipher and mx.cert_verified is True
    assert mx.cert_subject == f"CN={server.name}" and mx.cert_not_after
    assert "certificate valid" in result.reason


def test_tls12_only_server_is_verified_when_minimum_is_tls12(tls_lab, probe):
    result = probe(tls_lab.mail_domain("g-tls12.test", [tls_lab.mx("tls12")]))
    assert result.grade is Grade.VERIFIED
    assert result.mx[0].tls_version == "TLSv1.2"


def test_tls12_only_server_is_none_when_minimum_is_tls13(tls_lab, probe):
    result = probe(tls_lab.mail_domain("g-tls12-min13.test", [tls_lab.mx("tls12")]), min_version="TLSv1.3")
    assert result.status is DomainStatus.GRADED and result.grade is Grade.NONE
    assert "below the minimum TLSv1.3" in result.mx[0].reason
    assert result.mx[0].tls_version == "TLSv1.2"


def test_server_without_starttls_is_graded_none(tls_lab, probe):
    result = probe(tls_lab.mail_domain("g-plain.test", [tls_lab.mx("plain")]))
    assert result.status is DomainStatus.GRADED and result.grade is Grade.NONE
    assert result.mx[0].starttls is False
    assert "STARTTLS not offered" in result.reason


def test_tls10_only_server_is_graded_none_as_below_minimum(tls_lab, probe):
    result = probe(tls_lab.mail_domain("g-tls10.test", [tls_lab.mx("tls10")]))
    assert result.status is DomainStatus.GRADED and result.grade is Grade.NONE
    (mx,) = result.mx
    assert mx.starttls is True and mx.tls_version == "TLSv1" and mx.cert_verified is None
    assert "only TLSv1, below the minimum TLSv1.2" in mx.reason


@pytest.mark.parametrize(("behaviour", "why"), [
    ("selfsigned", "self-signed certificate"),
    ("expired", "certificate has expired"),
    ("wrongname", "Hostname mismatch"),
])
def test_invalid_certificate_is_unverified_with_reason(tls_lab, probe, behaviour, why):
    result = probe(tls_lab.mail_domain(f"g-{behaviour}.test", [tls_lab.mx(behaviour)]))
    assert result.status is DomainStatus.GRADED and result.grade is Grade.UNVERIFIED
    (mx,) = result.mx
    assert mx.cert_verified is False and mx.tls_version == "TLSv1.3"
    assert why in mx.reason and why in result.reason


def test_certificate_from_an_untrusted_ca_is_unverified(dns_lab, tls_lab):
    """Without the lab CA in ca_file, the same good server is only encrypted."""
    resolver = make_resolver([("127.0.0.1", dns_lab.port)], 1.0)
    prober = DomainProber(resolver, ProbeSettings(port=tls_lab.port, ca_file=None, timeout=3.0))
    result = grade(prober, tls_lab.mail_domain("g-untrusted.test", [tls_lab.mx("tls13")]))
    assert result.grade is Grade.UNVERIFIED
    assert "unable to get local issuer certificate" in result.reason


def test_first_mx_down_second_good_is_verified(tls_lab, probe):
    result = probe(tls_lab.mail_domain("g-firstdown.test", [tls_lab.mx("down"), tls_lab.mx("tls13")]))
    assert result.status is DomainStatus.GRADED and result.grade is Grade.VERIFIED
    down, good = result.mx
    assert down.grade is None and not down.reachable and "unreachable" in down.reason
    assert good.grade is Grade.VERIFIED
    assert "unreachable (not counted)" in result.reason


def test_every_mx_unreachable_is_unknown_never_none(tls_lab, probe):
    result = probe(tls_lab.mail_domain("g-alldown.test", [tls_lab.mx("down")]))
    assert result.status is DomainStatus.UNKNOWN and result.grade is None


def test_weakest_reachable_mx_sets_the_grade(tls_lab, probe):
    domain = tls_lab.mail_domain("g-mixed.test", [tls_lab.mx("tls13"), tls_lab.mx("selfsigned")])
    result = probe(domain)
    assert result.grade is Grade.UNVERIFIED
    assert [m.grade for m in result.mx] == [Grade.VERIFIED, Grade.UNVERIFIED]
    assert tls_lab.mx("selfsigned").name in result.reason


def test_plaintext_mx_makes_the_domain_none_even_beside_a_good_one(tls_lab, probe):
    domain = tls_lab.mail_domain("g-mixed-plain.test", [tls_lab.mx("tls13"), tls_lab.mx("plain")])
    assert probe(domain).grade is Grade.NONE


def test_dns_servfail_is_unknown(dns_lab, probe):
    dns_lab.zone.fail("g-servfail.test")
    result = probe("g-servfail.test")
    assert result.status is DomainStatus.UNKNOWN and result.grade is None
    assert "temporary" in result.reason


def test_dns_timeout_is_unknown(dns_lab, probe):
    dns_lab.zone.hang("g-hang.test")
    result = probe("g-hang.test", dns_timeout=0.5)
    assert result.status is DomainStatus.UNKNOWN and result.grade is None


def test_nonexistent_domain_and_null_mx_have_no_mail_servers(dns_lab, probe):
    dns_lab.zone.add("g-nullmx.test", "MX", "0 .")
    assert probe("g-nxdomain.test").status is DomainStatus.NO_MX
    null = probe("g-nullmx.test")
    assert null.status is DomainStatus.NO_MX and "null MX" in null.reason


def test_probe_says_quit_without_sending_mail(tls_lab, probe):
    server = tls_lab.start("tls13")
    result = probe(tls_lab.mail_domain("g-nomail.test", [server]))
    assert result.grade is Grade.VERIFIED
    assert server.connections == 1
    assert server.mail_commands == 0 and server.messages == []


def test_concurrent_probes_of_one_domain_share_one_connection(dns_lab, tls_lab):
    server = tls_lab.start("tls13")
    domain = tls_lab.mail_domain("g-coalesce.test", [server])
    prober = make_prober(dns_lab, tls_lab)

    async def go():
        try:
            return await asyncio.gather(*(prober.grade(domain) for _ in range(5)))
        finally:
            await prober.close()
    results = asyncio.run(go())
    assert {r.grade for r in results} == {Grade.VERIFIED}
    assert server.connections == 1


def test_stripping_starttls_after_a_good_probe_shows_on_the_next_probe(tls_lab, probe):
    server = tls_lab.start("tls13")
    domain = tls_lab.mail_domain("g-strip.test", [server])
    assert probe(domain).grade is Grade.VERIFIED
    with server.stripped():
        stripped = probe(domain)
    assert stripped.grade is Grade.NONE and stripped.mx[0].starttls is False
    assert probe(domain).grade is Grade.VERIFIED


def test_mx_that_never_answers_is_unknown_after_the_timeout(tls_lab, probe):
    result = probe(tls_lab.mail_domain("g-silent.test", [tls_lab.mx("silent")]), timeout=0.5)
    assert result.status is DomainStatus.UNKNOWN and result.grade is None
    assert "no answer within 0.5s" in result.mx[0].reason


def test_silent_first_mx_does_not_hide_a_good_second_one(tls_lab, probe):
    domain = tls_lab.mail_domain("g-silent-good.test", [tls_lab.mx("silent"), tls_lab.mx("tls12")])
    result = probe(domain, timeout=0.5)
    assert result.grade is Grade.VERIFIED and [m.reachable for m in result.mx] == [False, True]


def test_starttls_refused_with_454_is_temporary_not_none(tls_lab, probe):
    result = probe(tls_lab.mail_domain("g-454.test", [tls_lab.mx("tls454")]))
    assert result.status is DomainStatus.UNKNOWN and result.grade is None
    assert result.mx[0].starttls is True and "454" in result.mx[0].reason
