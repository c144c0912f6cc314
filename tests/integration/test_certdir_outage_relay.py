"""Fail closed through the real gateway: while the CA's CRL/OCSP server is down, the
recipient's certificate cannot be judged. Confidential mail then waits (deferred)
rather than leaving over TLS, and goes out S/MIME once the server is back.
"""

from __future__ import annotations

import email
import json

import pytest

from tests.fixtures.relay_lab import wait_until

BODY = ("Hej,\r\n\r\nSagen vedrører Jens Hansen, CPR-nr. 010190-1234, og hans helbred.\r\n\r\n"
        "Venlig hilsen\r\nSagsbehandleren\r\n")
RECIPIENT = "sagsbehandler@tilsyn.test"


@pytest.fixture
def outage_gateway(gateway_factory, tls_lab, oces_pki, slapd, tmp_path):
    mx = tls_lab.start("tls13")  # verified TLS is possible: the downgrade the test guards against
    tls_lab.mail_domain("tilsyn.test", [mx])
    gw = gateway_factory({
        "tls": f'ca_file = "{tls_lab.ca_file}"\nmta_sts_port = {tls_lab.https_port}',
        "certdir": f'trust_anchors = ["{oces_pki.trust_anchors}"]\nlocal_store = "{tmp_path / "certs"}"\n'
                   f'fetch_timeout = "3s"\n'
                   f'[[certdir.ldap]]\nname = "oces"\nurl = "{slapd.url}"\nbase = "{slapd.base}"',
    }).start()
    return gw, mx


def _entry(gw) -> dict:
    found = gw.cli("log", "search", "--json")
    records = json.loads(found.stdout) if found.returncode == 0 and found.stdout.strip() else []
    for record in records:
        for r in record["recipients"]:
            if r["address"] == RECIPIENT:
                return r
    return {}


def test_confidential_mail_waits_while_revocation_cannot_be_checked(outage_gateway, oces_pki):
    gw, mx = outage_gateway
    message = (f"From: advokat@firm.test\r\nTo: {RECIPIENT}\r\nSubject: Sag 2026-118\r\n"
               "Message-ID: <sag118@firm.test>\r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + BODY).encode()
    publisher = oces_pki.publisher
    with publisher.outage():
        before = len(publisher.requests)
        assert gw.send("advokat@firm.test", [RECIPIENT], message)[0] == 250
        assert wait_until(lambda: _entry(gw).get("status") == "deferred", timeout=30), _entry(gw)
        # The gateway did ask the CA's server (and got 503), and sent nothing meanwhile,
        # though the MX offers verified TLS.
        assert wait_until(lambda: len(publisher.requests) > before, timeout=10)
        assert mx.messages == []
        assert _entry(gw).get("protection") in (None, "")
        # At least one more attempt (retry = 1s, 2s) while still down: still nothing sent.
        attempts = len(publisher.requests)
        assert wait_until(lambda: len(publisher.requests) > attempts, timeout=30)
        assert mx.messages == []
    # The server is back: the next retry finds the certificate usable and encrypts.
    assert wait_until(lambda: len(mx.messages) == 1, timeout=60)
    delivered = mx.messages[0]
    assert email.message_from_bytes(delivered.data).get_content_type() == "application/pkcs7-mime"
    assert b"010190-1234" not in delivered.data
    assert wait_until(lambda: _entry(gw).get("status") == "delivered", timeout=30)
    assert _entry(gw)["protection"] == "smime"
