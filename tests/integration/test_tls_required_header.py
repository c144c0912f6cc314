"""A sender's `TLS-Required: No` (RFC 8689) relaxes nothing: not the decision for
confidential mail (Datatilsynet: check the domain, then force TLS), and not a recipient's
MTA-STS enforce policy for public mail (see FactGatherer.delivery_mx_policy for why).
Real gateway process, real DNS, real MX servers, real HTTPS policy server."""

from __future__ import annotations

from tests.fixtures.relay_lab import wait_until
from tests.fixtures.tls_delivery import confidential_message, recipient_state


def test_confidential_mail_with_tls_required_no_to_a_domain_without_starttls_is_held(
        tls_lab, tls_only_gateway, firm_sink):
    server = tls_lab.start("plain")
    domain = tls_lab.mail_domain("tlsreq-plain.test", [server])
    gw = tls_only_gateway()
    address = f"klient@{domain}"
    notices = len(firm_sink.snapshot())
    assert gw.send("advokat@firm.test", [address], confidential_message(address, "TLS-Required: No\r\n"))[0] == 250
    assert wait_until(lambda: recipient_state(gw, address).get("status") in ("quarantined", "delivered"))
    assert recipient_state(gw, address)["status"] == "quarantined"
    assert len(firm_sink.wait_for(notices + 1)) == notices + 1, "the sender is told the message is held"
    assert server.messages == [] and server.mail_commands == 0, "nothing went out in clear"


def test_tls_required_no_does_not_lift_an_mta_sts_enforce_policy_for_public_mail(tls_lab, tls_only_gateway):
    outsider = tls_lab.start("plain")
    permitted = tls_lab.start("tls13")
    domain = tls_lab.mail_domain("tlsreq-sts.test", [outsider, permitted])
    tls_lab.mta_sts.publish(domain, mode="enforce", mx=(permitted.name,), policy_id="r1")
    gw = tls_only_gateway()
    address = f"info@{domain}"
    message = (f"From: advokat@firm.test\r\nTo: {address}\r\nSubject: Frokost\r\nTLS-Required: No\r\n"
               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSes vi?\r\n").encode()
    assert gw.send("advokat@firm.test", [address], message)[0] == 250
    assert wait_until(lambda: len(permitted.messages) == 1)
    assert permitted.messages[0].tls
    assert outsider.messages == [] and outsider.mail_commands == 0
    assert recipient_state(gw, address)["protection"] == "tls-opportunistic"
