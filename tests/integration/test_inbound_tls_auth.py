"""Inbound STARTTLS and SMTP AUTH: only authenticated or allowed clients relay, AUTH only over TLS."""

from __future__ import annotations

import smtplib
import ssl

import pytest

from gateway.smtp_in import hash_password


@pytest.fixture
def tls_gateway(relay_lab, tls_lab, gateway_factory, tmp_path):
    cert, key = tls_lab.ca.issue(["gateway.relaylab.test"])
    users = tmp_path / "users"
    users.write_text(f"exchange-connector:{hash_password(b'hemmeligt kodeord', n=2**10)}\n")
    gw = gateway_factory({"server": f'listen = "127.0.0.1:{{PORT}}"\nhostname = "gateway.relaylab.test"\n'
                                    f'allowed_networks = ["192.0.2.0/24"]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
                                    f'users_file = "{users}"'}).start()
    context = ssl.create_default_context(cafile=tls_lab.ca_file)
    context.check_hostname = False  # we connect to 127.0.0.1; the chain is still verified
    return gw, context


def _message(to: str) -> bytes:
    return f"From: kontor@firm.test\r\nTo: {to}\r\nSubject: auth\r\n\r\nhej\r\n".encode()


def test_auth_is_offered_only_after_starttls(tls_gateway):
    gw, context = tls_gateway
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as client:
        client.ehlo("exchange.firm.test")
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        client.starttls(context=context)
        client.ehlo("exchange.firm.test")
        assert client.has_extn("auth")


def test_authenticated_client_outside_allowed_networks_may_relay(relay_lab, tls_gateway):
    gw, context = tls_gateway
    sink = relay_lab.sink("auth-relay")
    relay_lab.domain("authrelay.test", [sink])
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as client:
        client.starttls(context=context)
        client.login("exchange-connector", "hemmeligt kodeord")
        client.sendmail("kontor@firm.test", ["x@authrelay.test"], _message("x@authrelay.test"))
    got = sink.wait_for(1)
    assert len(got) == 1
    assert b"with ESMTPSA id" in got[0].data  # the Received line tells TLS and AUTH were used


def test_wrong_password_and_unauthenticated_relay_are_refused(tls_gateway):
    gw, context = tls_gateway
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as client:
        client.starttls(context=context)
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login("exchange-connector", "forkert")
        assert info.value.smtp_code == 535
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as client:
        client.starttls(context=context)
        client.ehlo("exchange.firm.test")
        code, text = client.mail("kontor@firm.test")
        assert code == 550 and text.startswith(b"5.7.1")
