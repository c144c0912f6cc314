"""Delivery enforces, the probe advises: the MX changes between the probe and the delivery.

The probe is made first (`sikkermail probe`, which shares the gateway's probe cache), so
the decision rests on what the MX could do then; then the MX changes its certificate or
its TLS versions, as a misconfiguration or an attacker in the path would, and the
delivery must check again on the very connection that sends. Real gateway process, real
DNS, real MX servers (aiosmtpd with TLS).
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures.relay_lab import wait_until
from tests.fixtures.tls_delivery import confidential_message, delivered_tls, recipient_state
from tests.fixtures.tls_lab import _server_context


def _probe(gw, domain: str) -> dict:
    shown = gw.cli("probe", domain, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def _swap_certificate(tls_lab, server, kind: str) -> None:
    """New connections to `server` get a certificate of this kind (the old one is gone)."""
    names = [f"other-name.{server.name.partition('.')[2]}"] if kind == "wrongname" else [server.name]
    cert, key = tls_lab.ca.issue(names, expired=kind == "expired", self_signed=kind == "selfsigned")
    server.tls_context = _server_context(cert, key, "tls13")


def _audit_tls(gw, address: str) -> dict | None:
    shown = gw.cli("log", "search", "--recipient", address, "--json")
    if shown.returncode != 0:
        return None
    for record in json.loads(shown.stdout):
        for r in record["recipients"]:
            if r["address"] == address and r["status"] == "delivered":
                return r["tls"]
    return None


@pytest.mark.parametrize("kind", ["selfsigned", "expired", "wrongname"])
def test_a_certificate_that_went_bad_after_the_probe_defers_tls_verified_mail(tls_lab, tls_only_gateway, kind):
    server = tls_lab.start("tls13")
    domain = tls_lab.mail_domain(f"swap-{kind}.test", [server])
    gw = tls_only_gateway()
    assert _probe(gw, domain)["grade"] == "tls-verified"
    _swap_certificate(tls_lab, server, kind)
    connections = server.connections
    address = f"klient@{domain}"
    assert gw.send("advokat@firm.test", [address], confidential_message(address))[0] == 250
    assert wait_until(lambda: recipient_state(gw, address).get("status") == "deferred", timeout=20)
    shown = recipient_state(gw, address)
    assert shown["protection"] == "tls-verified"
    assert "TLS handshake failed" in shown["response"] and "certificate verify failed" in shown["response"]
    # a retry meets the same certificate and is refused again
    assert wait_until(lambda: server.connections >= connections + 2, timeout=20)
    assert server.messages == [] and server.mail_commands == 0


def test_a_downgrade_to_tls10_only_after_the_probe_defers_tls_enforced_mail(tls_lab, tls_only_gateway):
    server = tls_lab.start("selfsigned")
    domain = tls_lab.mail_domain("downgrade-tls10.test", [server])
    gw = tls_only_gateway()
    assert _probe(gw, domain)["grade"] == "tls-unverified"
    cert, key = tls_lab.ca.issue([server.name], self_signed=True)
    server.tls_context = _server_context(cert, key, "tls10")
    address = f"klient@{domain}"
    assert gw.send("advokat@firm.test", [address], confidential_message(address))[0] == 250
    assert wait_until(lambda: recipient_state(gw, address).get("status") == "deferred", timeout=20)
    shown = recipient_state(gw, address)
    assert shown["protection"] == "tls-enforced"
    assert "TLS handshake failed" in shown["response"]
    assert server.messages == [] and server.mail_commands == 0


def test_when_the_first_mx_breaks_the_tls_rule_the_second_delivers_and_the_audit_names_it(
        tls_lab, tls_only_gateway):
    first, second = tls_lab.start("tls13"), tls_lab.start("tls13")
    domain = tls_lab.mail_domain("second-mx.test", [first, second])
    gw = tls_only_gateway()
    assert _probe(gw, domain)["grade"] == "tls-verified"
    _swap_certificate(tls_lab, first, "selfsigned")
    address = f"klient@{domain}"
    assert gw.send("advokat@firm.test", [address], confidential_message(address))[0] == 250
    assert wait_until(lambda: len(second.messages) == 1)
    assert first.messages == [] and first.mail_commands == 0
    assert first.connections >= 1, "the first MX was tried (and refused) first"
    assert wait_until(lambda: delivered_tls(gw, address) is not None)
    assert delivered_tls(gw, address)["mx"] == second.name
    assert wait_until(lambda: _audit_tls(gw, address) is not None)
    audit = _audit_tls(gw, address)
    assert audit["mx"] == second.name and audit["verified"] is True and audit["version"] == "TLSv1.3"


def test_a_delivery_over_tls12_records_tls12(tls_lab, tls_only_gateway):
    server = tls_lab.start("tls12")
    domain = tls_lab.mail_domain("record-tls12.test", [server])
    gw = tls_only_gateway()
    address = f"klient@{domain}"
    assert gw.send("advokat@firm.test", [address], confidential_message(address))[0] == 250
    assert wait_until(lambda: len(server.messages) == 1)
    assert server.messages[0].tls_version == "TLSv1.2"
    assert wait_until(lambda: delivered_tls(gw, address) is not None)
    assert delivered_tls(gw, address)["version"] == "TLSv1.2"
    assert wait_until(lambda: _audit_tls(gw, address) is not None)
    audit = _audit_tls(gw, address)
    assert audit["version"] == "TLSv1.2" and audit["mx"] == server.name and audit["cipher"] == server.messages[0].cipher
