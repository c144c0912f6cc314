"""Delivery enforces what the decision required; the probe only advises.

Real gateway process, real DNS, real MX servers with chosen TLS behaviours. The
policy here leaves S/MIME out so the TLS path is what is decided.
"""

from __future__ import annotations

import time

import pytest

from gateway.delivery import CACHE_IDLE_SECONDS
from tests.fixtures.relay_lab import wait_until
from tests.fixtures.tls_delivery import confidential_message as _confidential
from tests.fixtures.tls_delivery import delivered_tls as _journal_tls
from tests.fixtures.tls_delivery import recipient_state as _recipient


@pytest.fixture
def tls_gateway(tls_only_gateway):
    return tls_only_gateway


@pytest.fixture
def sender_domain(firm_sink):
    return firm_sink


def test_confidential_mail_goes_over_verified_tls_when_the_domain_has_it(tls_lab, tls_gateway):
    server = tls_lab.start("tls13")
    tls_lab.mail_domain("verified.test", [server])
    gw = tls_gateway()
    assert gw.send("advokat@firm.test", ["dommer@verified.test"], _confidential("dommer@verified.test"))[0] == 250
    assert wait_until(lambda: len(server.messages) == 1)
    assert server.messages[0].tls and server.messages[0].tls_version == "TLSv1.3"
    assert wait_until(lambda: _journal_tls(gw, "dommer@verified.test") is not None)
    tls = _journal_tls(gw, "dommer@verified.test")
    assert tls == {"mx": server.name, "version": "TLSv1.3", "cipher": server.messages[0].cipher, "verified": True,
                   "verification": f"certificate chain and name {server.name} verified (tls-verified)"}
    assert _recipient(gw, "dommer@verified.test")["protection"] == "tls-verified"


def test_a_self_signed_mx_gets_enforced_not_verified_tls(tls_lab, tls_gateway):
    server = tls_lab.start("selfsigned")
    tls_lab.mail_domain("selfsigned-enf.test", [server])
    gw = tls_gateway()
    assert gw.send("advokat@firm.test", ["x@selfsigned-enf.test"], _confidential("x@selfsigned-enf.test"))[0] == 250
    assert wait_until(lambda: len(server.messages) == 1)
    assert server.messages[0].tls
    assert wait_until(lambda: _journal_tls(gw, "x@selfsigned-enf.test") is not None)
    tls = _journal_tls(gw, "x@selfsigned-enf.test")
    assert tls["verified"] is False
    assert tls["verification"] == "certificate not checked (tls-enforced: encryption only)"
    assert _recipient(gw, "x@selfsigned-enf.test")["protection"] == "tls-enforced"


def test_a_domain_without_starttls_never_gets_confidential_mail_in_clear(tls_lab, tls_gateway, sender_domain):
    server = tls_lab.start("plain")
    tls_lab.mail_domain("plaintext-only.test", [server])
    gw = tls_gateway()
    before = len(sender_domain.snapshot())
    assert gw.send("advokat@firm.test", ["klient@plaintext-only.test"],
                   _confidential("klient@plaintext-only.test"))[0] == 250
    notice = sender_domain.wait_for(before + 1)
    assert len(notice) == before + 1, "the sender is told the message is held"
    assert wait_until(lambda: _recipient(gw, "klient@plaintext-only.test").get("status") == "quarantined")
    assert server.messages == [] and server.mail_commands == 0


def test_starttls_stripped_after_a_good_probe_defers_then_quarantines_with_no_plaintext_copy(
        tls_lab, tls_gateway, sender_domain):
    server = tls_lab.start("tls13")
    tls_lab.mail_domain("stripped.test", [server])
    gw = tls_gateway(max_age="6s")
    # First message: the probe sees good TLS and caches it; delivery is over TLS.
    assert gw.send("advokat@firm.test", ["a@stripped.test"], _confidential("a@stripped.test"))[0] == 250
    assert wait_until(lambda: len(server.messages) == 1)
    mail_commands = server.mail_commands
    # Let the delivery's cached connection (TLS, made before the attack) expire, so the
    # next message needs a new connection to the stripped server.
    time.sleep(CACHE_IDLE_SECONDS + 1.5)
    # Now an attacker strips STARTTLS from the MX's EHLO. The cached grade still says verified,
    # and a sender's TLS-Required: No (RFC 8689) asks us to relax. Neither may lead to clear text.
    with server.stripped():
        assert gw.send("advokat@firm.test", ["b@stripped.test"],
                       _confidential("b@stripped.test", "TLS-Required: No\r\n"))[0] == 250
        assert wait_until(lambda: _recipient(gw, "b@stripped.test").get("status") == "deferred", timeout=20)
        assert "STARTTLS not offered" in _recipient(gw, "b@stripped.test")["response"]
        assert wait_until(lambda: _recipient(gw, "b@stripped.test").get("status") == "quarantined", timeout=40)
        assert len(server.messages) == 1, "no plaintext copy arrived"
        assert server.mail_commands == mail_commands, "not even a MAIL FROM was sent without TLS"
        assert server.connections > 1, "delivery was attempted (and refused) on the stripped server"


def test_a_domain_whose_weakest_mx_has_no_starttls_gets_no_confidential_mail(tls_lab, tls_gateway):
    plain = tls_lab.start("plain")
    good = tls_lab.start("tls12")
    tls_lab.mail_domain("mixed.test", [plain, good])
    gw = tls_gateway()
    assert gw.send("advokat@firm.test", ["x@mixed.test"], _confidential("x@mixed.test"))[0] == 250
    # The domain's grade is the weakest answering MX (none), so tls-* is not possible:
    # the policy quarantines rather than trusting the good MX to be the one used.
    assert wait_until(lambda: _recipient(gw, "x@mixed.test").get("status") in ("quarantined", "delivered"))
    assert _recipient(gw, "x@mixed.test")["status"] == "quarantined"
    assert plain.messages == [] and good.messages == []


def test_mta_sts_enforce_sends_only_to_permitted_mx_hosts(tls_lab, tls_gateway):
    outsider = tls_lab.start("tls13")
    permitted = tls_lab.start("tls13")
    tls_lab.mail_domain("sts-enforce.test", [outsider, permitted])
    tls_lab.mta_sts.publish("sts-enforce.test", mode="enforce", mx=(permitted.name,))
    gw = tls_gateway()
    assert gw.send("advokat@firm.test", ["x@sts-enforce.test"], _confidential("x@sts-enforce.test"))[0] == 250
    assert wait_until(lambda: len(permitted.messages) == 1)
    assert outsider.messages == []
    assert _recipient(gw, "x@sts-enforce.test")["protection"] == "tls-verified"
