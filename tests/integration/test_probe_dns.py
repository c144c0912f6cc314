"""MX resolution corners that change what is probed: CNAMEs (RFC 5321 §5.1, RFC 2181 §10.3)."""

from __future__ import annotations

from tests.integration.test_probe_grades import grade, make_prober
from tlsprobe import DomainStatus, Grade


def test_domain_that_is_a_cname_uses_the_target_domains_mx(dns_lab, tls_lab):
    tls_lab.mail_domain("n-real.test", [tls_lab.mx("tls13")])
    dns_lab.zone.add("n-alias.test", "CNAME", "n-real.test.")
    result = grade(make_prober(dns_lab, tls_lab), "n-alias.test")
    assert result.status is DomainStatus.GRADED and result.grade is Grade.VERIFIED
    assert [m.name for m in result.mx] == [tls_lab.mx("tls13").name]


def test_mx_target_behind_a_cname_is_verified_against_the_mx_name(dns_lab, tls_lab):
    """Like Postfix (smtp_cname_overrides_servername = no): the name checked in the
    certificate is the one in the MX record, not a CNAME target DNS handed us."""
    server = tls_lab.mx("tls13")
    dns_lab.zone.add("n-mxalias.test", "MX", "10 alias-mx.n-mxalias.test.")
    dns_lab.zone.add("alias-mx.n-mxalias.test", "CNAME", f"{server.name}.")
    result = grade(make_prober(dns_lab, tls_lab), "n-mxalias.test")
    (mx,) = result.mx
    assert mx.name == "alias-mx.n-mxalias.test" and mx.address == server.address
    assert result.grade is Grade.UNVERIFIED and "Hostname mismatch" in mx.reason


def test_domain_without_mx_is_probed_at_its_own_address(dns_lab, tls_lab):
    server = tls_lab.mx("plain")
    dns_lab.zone.add("n-implicit.test", "A", server.address)
    result = grade(make_prober(dns_lab, tls_lab), "n-implicit.test")
    assert result.grade is Grade.NONE
    assert [(m.name, m.address) for m in result.mx] == [("n-implicit.test", server.address)]
