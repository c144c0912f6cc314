"""The good case against a real Postfix smtpd with STARTTLS."""

from __future__ import annotations

import re
import time

from tests.integration.test_probe_grades import grade, make_prober
from tlsprobe import DomainStatus, Grade


def _wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    for _ in range(200):  # bounded by count and by time
        if predicate() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return predicate()


def test_postfix_with_valid_certificate_is_verified(dns_lab, tls_lab, postfix_mx):
    domain = tls_lab.mail_domain("p-postfix.test", [postfix_mx])
    result = grade(make_prober(dns_lab, tls_lab), domain)
    assert result.status is DomainStatus.GRADED and result.grade is Grade.VERIFIED
    (mx,) = result.mx
    assert mx.name == postfix_mx.name and mx.address == postfix_mx.address
    assert mx.starttls and mx.tls_version == "TLSv1.3" and mx.cert_verified
    assert mx.banner.startswith(f"220 {postfix_mx.name} ESMTP")


def test_postfix_sees_starttls_and_quit_but_no_mail(dns_lab, tls_lab, postfix_mx):
    domain = tls_lab.mail_domain("p-postfix-quiet.test", [postfix_mx])
    before = postfix_mx.log().count("disconnect from")
    grade(make_prober(dns_lab, tls_lab), domain)
    assert _wait_for(lambda: postfix_mx.log().count("disconnect from") > before)
    last = [line for line in postfix_mx.log().splitlines() if "disconnect from" in line][-1]
    assert re.search(r"ehlo=1 starttls=1 quit=1 commands=3$", last), last  # no MAIL, no RCPT
    assert "TLS connection established from" in postfix_mx.log()
