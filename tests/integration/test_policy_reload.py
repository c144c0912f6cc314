"""SIGHUP reloads the policy: a valid new policy changes what happens to the next
message; an invalid one is refused and the policy in force stays."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.relay_lab import ROOT, wait_until

NEWSLETTER = "Kære alle,\r\n\r\nNæste fredag er der kage i kantinen kl. 14.\r\n"
HOLD_RULE = ('\n[[rules]]\nname = "hold-reload-test"\nrecipient_domains = ["reload.test"]\n'
             'level = "confidential"\n')


def _message(to: str, mid: str) -> bytes:
    return (f"From: sagsbehandler@firm.test\r\nTo: {to}\r\nSubject: Kage\r\n"
            f"Message-ID: <{mid}@firm.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + NEWSLETTER).encode()


@pytest.fixture
def firm(relay_lab):
    if not hasattr(relay_lab, "_firm"):
        relay_lab._firm = relay_lab.sink("firm-mx")
        relay_lab.domain("firm.test", [relay_lab._firm])
    return relay_lab._firm


def _status(gw, address: str) -> list[str]:
    found = gw.cli("log", "search", "--json")
    records = json.loads(found.stdout) if found.returncode == 0 and found.stdout.strip() else []
    return [r["status"] for record in records for r in record["recipients"] if r["address"] == address]


def test_a_valid_reload_changes_the_outcome_and_an_invalid_one_keeps_it(
        tls_lab, gateway_factory, firm, tmp_path):
    policy = tmp_path / "policy.toml"
    shipped = (ROOT / "policy.toml").read_text()
    policy.write_text(shipped)
    gw = gateway_factory({
        "delivery": f'mx_port = {tls_lab.port}\nretry = ["1s"]\nmax_age = "1h"\n'
                    'connect_timeout = "3s"\ndelivery_timeout = "20s"',
        "tls": f'ca_file = "{tls_lab.ca_file}"\nmta_sts_port = {tls_lab.https_port}',
        "policy": f'file = "{policy}"',
    }).start()
    plain = tls_lab.start("plain")
    tls_lab.mail_domain("reload.test", [plain])

    # the shipped policy: a newsletter is public and leaves (no TLS offered: in clear)
    assert gw.send("sagsbehandler@firm.test", ["a@reload.test"], _message("a@reload.test", "r1"))[0] == 250
    assert wait_until(lambda: _status(gw, "a@reload.test") == ["delivered"], timeout=30)
    assert len(plain.messages) == 1

    # a valid policy with a rule for the domain: the next newsletter is held
    policy.write_text(shipped + HOLD_RULE)
    gw.process.send_signal(1)  # SIGHUP
    assert wait_until(lambda: "policy-reloaded" in gw.log_text(), timeout=10)
    assert gw.send("sagsbehandler@firm.test", ["b@reload.test"], _message("b@reload.test", "r2"))[0] == 250
    assert wait_until(lambda: _status(gw, "b@reload.test") == ["quarantined"], timeout=30)
    assert len(plain.messages) == 1

    # an invalid policy is refused; the rule in force still holds the next one
    policy.write_text(shipped + HOLD_RULE + '\n[[rules]]\nname = "broken"\n'
                      'recipient_domains = ["x.test"]\nprotections = ["carrier-pigeon"]\n')
    gw.process.send_signal(1)
    assert wait_until(lambda: "policy-reload-rejected" in gw.log_text(), timeout=10)
    assert "carrier-pigeon" in gw.log_text()
    assert gw.send("sagsbehandler@firm.test", ["c@reload.test"], _message("c@reload.test", "r3"))[0] == 250
    assert wait_until(lambda: _status(gw, "c@reload.test") == ["quarantined"], timeout=30)
    assert len(plain.messages) == 1
