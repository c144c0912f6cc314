"""Content classification through the real gateway: an unmarked CPR number makes a
message confidential; it then needs S/MIME or enforced TLS, else it is held. An
administrator's release below policy re-enters the pipeline and opens an incident.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.fixtures.relay_lab import wait_until

CPR_BODY = ("Hej Mette,\r\n\r\nHer er oplysningerne til ansøgningen: Jens Hansen, CPR-nr. 010190-1234, "
            "bor på Strandvejen 12.\r\n\r\nVenlig hilsen\r\nSagsbehandleren\r\n")
NEWSLETTER = "Kære alle,\r\n\r\nNæste fredag er der kage i kantinen kl. 14.\r\n"


def _message(to: str, body: str, subject: str = "Ansøgning") -> bytes:
    return (f"From: sagsbehandler@firm.test\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body).encode()


@pytest.fixture
def firm(relay_lab):
    if not hasattr(relay_lab, "_firm"):
        relay_lab._firm = relay_lab.sink("firm-mx")
        relay_lab.domain("firm.test", [relay_lab._firm])
    return relay_lab._firm


@pytest.fixture
def gw(gateway_factory, tls_lab):
    return gateway_factory({
        "delivery": f'mx_port = {tls_lab.port}\nretry = ["1s"]\nmax_age = "1h"\n'
                    'connect_timeout = "3s"\ndelivery_timeout = "20s"',
        "tls": f'ca_file = "{tls_lab.ca_file}"\nmta_sts_port = {tls_lab.https_port}',
    }).start()


def _records(gw) -> list[dict]:
    found = gw.cli("log", "search", "--json")
    return json.loads(found.stdout) if found.returncode == 0 and found.stdout.strip() else []


def _record_for(gw, address: str) -> dict:
    for record in _records(gw):
        if any(r["address"] == address for r in record["recipients"]):
            return record
    return {}


def _status(gw, address: str) -> str | None:
    record = _record_for(gw, address)
    return next((r["status"] for r in record.get("recipients", []) if r["address"] == address), None)


def test_unmarked_cpr_to_a_domain_without_tls_is_held_and_the_evidence_is_masked(tls_lab, gw, firm):
    plain = tls_lab.start("plain")
    tls_lab.mail_domain("borger-plain.test", [plain])
    before = len(firm.snapshot())
    assert gw.send("sagsbehandler@firm.test", ["mette@borger-plain.test"],
                   _message("mette@borger-plain.test", CPR_BODY))[0] == 250
    assert wait_until(lambda: _status(gw, "mette@borger-plain.test") == "quarantined", timeout=30)
    record = _record_for(gw, "mette@borger-plain.test")
    assert record["classification"]["level"] == "confidential"
    text = json.dumps(record, ensure_ascii=False)
    assert "010190-xxxx" in text and "010190-1234" not in text and "Jens Hansen" not in text
    assert plain.messages == []
    notice = firm.wait_for(before + 1)[-1]
    assert notice.rcpt_tos == ("sagsbehandler@firm.test",)
    assert b"010190-1234" not in notice.data and b"Strandvejen" not in notice.data


def test_unmarked_cpr_goes_over_verified_tls_when_the_domain_has_it(tls_lab, gw):
    good = tls_lab.start("tls13")
    tls_lab.mail_domain("borger-tls.test", [good])
    assert gw.send("sagsbehandler@firm.test", ["mette@borger-tls.test"],
                   _message("mette@borger-tls.test", CPR_BODY))[0] == 250
    assert wait_until(lambda: len(good.messages) == 1, timeout=30)
    assert good.messages[0].tls_version == "TLSv1.3"
    assert wait_until(lambda: _status(gw, "mette@borger-tls.test") == "delivered", timeout=30)
    entry = _record_for(gw, "mette@borger-tls.test")["recipients"][0]
    assert entry["protection"] == "tls-verified" and entry["tls"]["verified"] is True


def test_a_newsletter_stays_public_and_is_delivered_even_without_tls(tls_lab, gw):
    plain = tls_lab.start("plain")
    tls_lab.mail_domain("kantine.test", [plain])
    assert gw.send("sagsbehandler@firm.test", ["alle@kantine.test"],
                   _message("alle@kantine.test", NEWSLETTER, "Kage"))[0] == 250
    assert wait_until(lambda: len(plain.messages) == 1, timeout=30)
    assert not plain.messages[0].tls
    assert wait_until(lambda: _status(gw, "alle@kantine.test") == "delivered", timeout=30)
    assert _record_for(gw, "alle@kantine.test")["classification"]["level"] == "public"


def test_release_below_policy_reenters_the_pipeline_and_opens_an_incident(tls_lab, gw, firm):
    plain = tls_lab.start("plain")
    tls_lab.mail_domain("release.test", [plain])
    assert gw.send("sagsbehandler@firm.test", ["klient@release.test"],
                   _message("klient@release.test", CPR_BODY))[0] == 250
    assert wait_until(lambda: _status(gw, "klient@release.test") == "quarantined", timeout=30)
    held = json.loads(gw.cli("quarantine", "list", "--json").stdout)
    assert len(held) == 1
    released = gw.cli("quarantine", "release", held[0]["id"], "--reason", "klienten har accepteret risikoen",
                      "--protection", "tls-opportunistic", "--operator", "compliance")
    assert released.returncode == 0, released.stderr
    assert wait_until(lambda: len(plain.messages) == 1, timeout=30)
    copy = re.search(r" as (\S+)", released.stdout).group(1)  # "released Q... with tls-opportunistic as <id>"

    def copy_delivered() -> bool:
        return any(r["status"] == "delivered" for record in _records(gw) if record["id"] == copy
                   for r in record["recipients"] if r["address"] == "klient@release.test")

    # the copy's delivery in clear is in the audit, and it opened no second incident
    assert wait_until(copy_delivered, timeout=30)
    incidents = json.loads(gw.cli("incidents", "list", "--json").stdout)
    assert len(incidents) == 1
    assert incidents[0]["recipients"] == ["klient@release.test"]
    assert incidents[0]["quarantine_id"] == held[0]["id"]
    assert len(incidents[0]["messages"]) == 2  # the held message and the released copy
