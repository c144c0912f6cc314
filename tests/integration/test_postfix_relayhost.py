"""A real Postfix, as the organisation's mail server, uses the gateway as its relayhost."""

from __future__ import annotations

import smtplib

import pytest

from tests.fixtures.postfix import PostfixInstance, available
from tests.fixtures.relay_lab import free_port, wait_until


@pytest.fixture
def postfix_in_front(gateway_factory):
    assert available(), "postfix is installed by .ci/run and the tests run as root"
    gw = gateway_factory().start()
    instance = PostfixInstance(("127.0.0.1", free_port()), ("127.0.0.1", gw.port)).start()
    try:
        yield instance, gw
    finally:
        instance.stop()


def test_mail_submitted_to_postfix_reaches_the_recipient_through_the_gateway(relay_lab, postfix_in_front):
    postfix, gw = postfix_in_front
    sink = relay_lab.sink("via-postfix")
    relay_lab.domain("viapostfix.test", [sink])
    with smtplib.SMTP(*postfix.listen, timeout=30) as client:
        for n in range(5):
            client.sendmail("kontor@firm.test", [f"modtager{n}@viapostfix.test"],
                            f"From: kontor@firm.test\r\nTo: modtager{n}@viapostfix.test\r\n"
                            f"Subject: besked {n}\r\n\r\nHej nummer {n}\r\n".encode())
    got = sink.wait_for(5, timeout=60)
    assert sorted(m.rcpt_tos[0] for m in got) == [f"modtager{n}@viapostfix.test" for n in range(5)]
    # the chain is visible: Postfix's Received line under ours
    assert all(m.data.startswith(b"Received: from postfix.lab.test") for m in got)
    assert wait_until(postfix.queue_is_empty, timeout=30), postfix.log()[-2000:]
    assert "status=sent" in postfix.log() and f"relay=127.0.0.1[127.0.0.1]:{gw.port}" in postfix.log()
