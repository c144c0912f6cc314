"""The Danish HTML report speaks Danish: every label and value the report itself writes.

What stays as recorded (a decision's reason, an operator's reason, what happened) is
data, marked `class="recorded"`, and is left out of the check. Acronyms that Danish
uses as they are (S/MIME, TLS, MX, ID) are allowed.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gateway.audit import AuditStore, OperatorAction, parse_time
from gateway.report import build_report, report_html
from tests.integration.test_report_month import generate

# English words that a label or a value of the report could be made of; none may be visible in Danish.
ENGLISH = (
    "delivered", "queued", "deferred", "bounced", "quarantined", "quarantine", "blocked", "released", "deleted",
    "purged", "held", "open", "overdue", "notified", "late", "closed", "incident", "incidents", "in clear",
    "verified", "enforced", "opportunistic", "none", "public", "confidential", "sensitive", "recipient",
    "recipients", "message", "messages", "protection", "level", "share", "count", "domain", "domains", "reason",
    "outcome", "operator", "when", "what", "deadline", "running", "retention", "expired", "smime", "tls-verified",
    "tls-enforced", "tls-opportunistic", "record", "generated", "period", "without", "notification",
)


class VisibleText(HTMLParser):
    """The text a reader sees: no <style>, no cells of recorded text."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip or tag == "style" or ("class", "recorded") in attrs:
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(page: str) -> str:
    parser = VisibleText()
    parser.feed(page)
    return " ".join(parser.parts)


def english_words(text: str) -> list[str]:
    return sorted({w for w in ENGLISH if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text, re.IGNORECASE)})


@pytest.fixture
def busy_month(audit_store: AuditStore) -> tuple[AuditStore, float, float]:
    since, until = parse_time("2026-09-01"), parse_time("2026-09-30", end=True)
    truth = generate(audit_store, since, 30)
    (released_msg, released_q), (deleted_msg, deleted_q), (purged_msg, purged_q) = truth.held_ids[:3]
    audit_store.append_sync(OperatorAction(at=since + 86400 * 20, operator="hanne", action="quarantine.release",
                                           target=released_q, reason="klienten bad om det", message=released_msg,
                                           details={"protection": "tls-opportunistic", "below_policy": True,
                                                    "incident": "INC-2026-0001"}))
    audit_store.append_sync(OperatorAction(at=since + 86400 * 21, operator="hanne", action="quarantine.delete",
                                           target=deleted_q, reason="dublet", message=deleted_msg))
    audit_store.append_sync(OperatorAction(at=since + 86400 * 22, operator="sikkermail", action="quarantine.purge",
                                           target=purged_q, reason="opbevaringstid", message=purged_msg))
    # every deadline state: running, overdue, notified in time, notified late, closed
    base = {"what_happened": "x", "cause": "y"}
    audit_store.open_incident(operator="dpo", at=until - 3600, fields={**base, "discovered_at": until - 3600})
    audit_store.open_incident(operator="dpo", at=since, fields={**base, "discovered_at": since})
    audit_store.open_incident(operator="dpo", at=since + 3600, fields={
        **base, "discovered_at": since + 3600, "datatilsynet_notified": True,
        "datatilsynet_notified_at": since + 7200})
    audit_store.open_incident(operator="dpo", at=since + 7200, fields={
        **base, "discovered_at": since + 7200, "datatilsynet_notified": True,
        "datatilsynet_notified_at": since + 7200 + 100 * 3600})
    audit_store.open_incident(operator="dpo", at=since + 9000, fields={**base, "discovered_at": since + 9000,
                                                                        "status": "closed"})
    return audit_store, since, until


@pytest.mark.parametrize("audit_database", ["sqlite:///var/audit.db"])  # rendering does not depend on the database
def test_the_danish_report_has_no_english_label_or_value(busy_month, tmp_path: Path) -> None:
    store, since, until = busy_month
    report = build_report(store, since, until, now=until)
    states = {i["deadline_state"] for i in report["incidents"]}
    assert {"open", "overdue", "notified", "notified late", "closed"} <= states
    assert set(report["quarantined"]["outcomes"]) >= {"released", "deleted", "purged", "held"}
    text = visible_text(report_html(report, "da"))
    assert english_words(text) == []
    for danish in ("leveret", "tilbageholdt", "afvist", "returneret", "frigivet", "slettet", "verificeret TLS",
                   "tvunget TLS", "opportunistisk TLS", "ukrypteret", "Hændelse", "frist overskredet",
                   "anmeldt til Datatilsynet", "anmeldt for sent (28 t for sent)", "lukket uden anmeldelse"):
        assert danish in text, danish


@pytest.mark.parametrize("audit_database", ["sqlite:///var/audit.db"])
def test_the_english_report_keeps_english_values(busy_month) -> None:
    store, since, until = busy_month
    text = visible_text(report_html(build_report(store, since, until, now=until), "en"))
    for english in ("delivered", "quarantined", "verified TLS", "enforced TLS", "in clear", "Incident",
                    "notified late (28 h late)", "deadline overdue", "released"):
        assert english in text, english
    assert "leveret" not in text and "anmeldt" not in text
