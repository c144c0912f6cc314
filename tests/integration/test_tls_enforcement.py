"""Delivery enforces what the decision required; the probe only advises.

Real gateway process, real DNS, real MX servers with chosen TLS behaviours. The
policy here leaves S/MIME out so the TLS path is what is decided.
"""

from __future__ import annotations

import json
import time

import pytest

from gateway.delivery import CACHE_IDLE_SECONDS
from tests.fixtures.relay_lab import ROOT, wait_until

TLS_ONLY_POLICY = (ROOT / "policy.toml").read_text().replace(
    'protections = ["smime", "tls-verified", "tls-enforced"]', 'protections = ["tls-verified", "tls-enforced"]'
).replace('protections = ["smime", "tls-verified"]', 'protections = ["tls-verified"]')


@pytest.fixture
def tls_gateway(gateway_factory, tls_lab, tmp_path):
    assert '"tls-verified", "tls-enforced"]' in TLS_ONLY_POLICY
    policy = tmp_path / "tls-only-policy.toml"
    policy.write_text(TLS_ONLY_POLICY)

    def make(max_age: str = "1h", name: str = "gw"):
        return gateway_factory({
            "policy": f'file = "{policy}"',
            "delivery": f'mx_port = {tls_lab.port}\nretry = ["1s"]\nmax_age = "{max_age}"\n'
                        'connect_timeout = "3s"\ndelivery_timeout = "20s"',
            "tls": f'ca_file = "{tls_lab.ca_file}"\nmta_sts_port = {tls_lab.https_port}',
        }, name=name).start()

    return make


@pytest.fixture
def sender_domain(relay_lab):
    if not hasattr(relay_lab, "_firm"):
        relay_lab._firm = relay_lab.sink("firm-mx")
        relay_lab.domain("firm.test", [relay_lab._firm])
    return relay_lab._firm


def _confidential(to: str, extra: str = "") -> bytes:
    return (f"From: advokat@firm.test\r\nTo: {to}\r\nSubject: [fortrolig] Sagens akter\r\n{extra}"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSe vedhæftede.\r\n").encode()


def _recipient(gw, address: str) -> dict:
    for state in ("done", "deferred", "active", "incoming"):
        for message_id in gw.ids(state):
            shown = json.loads(gw.cli("queue", "show", message_id, "--json").stdout)
            for r in shown["recipients"]:
                if r["address"] == address:
                    return r
    return {}


def _journal_tls(gw, address: str) -> dict | None:
    for state in ("done", "active", "deferred"):
        for message_id in gw.ids(state):
            for line in (gw.spool / state / message_id / "journal").read_text().splitlines():
                record = json.loads(line)
                if record.get("rcpt") == address and record.get("status") == "delivered":
                    return record.get("tls")
    return None


def test_confidential_mail_goes_over_verified_tls_when_the_domain_has_it(tls_lab, tls_gateway):
    server = tls_lab.start("tls13")
    tls_lab.mail_domain("verified.test", [server])
    gw = tls_gateway()
    assert gw.send("advokat@firm.test", ["dommer@verified.test"], _confidential("dommer@verified.test"))[0] == 250
    assert wait_until(lambda: len(server.messages) == 1)
    assert server.messages[0].tls and server.messages[0].tls_version == "TLSv1.3"
    assert wait_until(lambda: _journal_tls(gw, "dommer@verified.test") is not None)
    tls = _journal_tls(gw, "dommer@verified.test")
    assert tls == {"mx": server.name, "version": "TLSv1.3", "cipher": server.messages[0].cipher, "verified": True}
    assert _recipient(gw, "dommer@verified.test")["protection"] == "tls-verified"


def test_a_self_signed_mx_gets_enforced_not_verified_tls(tls_lab, tls_gateway):
    server = tls_lab.start("selfsigned")
    tls_lab.mail_domain("selfsigned-enf.test", [server])
    gw = tls_gateway()
    assert gw.send("advokat@firm.test", ["x@selfsigned-enf.test"], _confidential("x@selfsigned-enf.test"))[0] == 250
    assert wait_until(lambda: len(server.messages) == 1)
    assert server.messages[0].tls
    assert wait_until(lambda: _journal_tls(gw, "x@selfsigned-enf.test") is not None)
    assert _journal_tls(gw, "x@selfsigned-enf.test")["verified"] is False
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


def test_the_next_mx_is_tried_when_the_first_cannot_do_tls(tls_lab, tls_gateway):
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
