"""The breach log's number of data subjects counts every distinct CPR number, not the first five.

GDPR art. 33(3)(a) asks for the approximate number of data subjects concerned. The
classifier keeps only a handful of masked samples (and a masked sample merges people
born on the same day), so it also counts distinct full numbers — on one-way digests,
never keeping them — and the incident's estimate uses that count.
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

from gateway.audit import AuditStore
from gateway.events import (
    MessageAccepted,
    MessageClassified,
    RecipientDecided,
    RecipientStatus,
    RecipientUpdated,
    TlsSession,
)
from policy.classify import classify_message
from policy.cpr import modulus11
from policy.model import Action, Decision, Level, Protection, Step
from policy.policyfile import load_policy

ROOT = Path(__file__).resolve().parents[2]
BIRTH_DATES = [f"{day:02d}{month:02d}85" for day in (3, 14, 22, 27) for month in (1, 4, 6, 9, 11)]  # 20 dates


def distinct_cprs(count: int) -> list[str]:
    """`count` different valid CPR numbers (modulus 11), many sharing a birth date."""
    found: list[str] = []
    for serial in range(1000, 10000):
        for date in BIRTH_DATES:
            digits = f"{date}{serial}"
            if modulus11(digits) and f"{date}-{serial}" not in found:
                found.append(f"{date}-{serial}")
                if len(found) == count:
                    return found
    raise AssertionError("not enough CPR numbers")


def client_list_message(numbers: list[str]) -> bytes:
    rows = ["Navn;CPR-nr.;Adresse"] + [f"Klient {i};{cpr};Vej {i}" for i, cpr in enumerate(numbers)]
    message = EmailMessage()
    message["From"] = "sagsbehandler@firm.test"
    message["To"] = "revisor@revision.test"
    message["Subject"] = "Klientliste"
    message.set_content("Hej, her er listen over klienter.\n")
    message.add_attachment("\n".join(rows).encode(), maintype="text", subtype="csv", filename="klienter.csv")
    return message.as_bytes()


def test_two_hundred_clients_in_a_csv_are_counted_as_two_hundred_people() -> None:
    numbers = distinct_cprs(200)
    assert len({n[:6] for n in numbers}) == 20  # masked, they would be 20 people at most
    # the same list pasted twice: 400 findings, still 200 people
    classification = classify_message(client_list_message(numbers + numbers), load_policy(ROOT / "policy.toml"))
    (cpr,) = [e for e in classification.evidence if e.detector == "cpr"]
    assert cpr.count == 400 and cpr.distinct == 200
    assert len(cpr.samples) <= 5 and all(s.endswith("-xxxx") for s in cpr.samples)
    assert not any(n[7:] in json.dumps([list(e.samples) for e in classification.evidence]) for n in numbers)


def test_the_incident_estimate_uses_the_distinct_count(audit_store: AuditStore) -> None:
    numbers = distinct_cprs(200)
    classification = classify_message(client_list_message(numbers), load_policy(ROOT / "policy.toml"))
    assert classification.level is Level.CONFIDENTIAL
    rcpt = "revisor@revision.test"
    decision = Decision(rcpt, Level.CONFIDENTIAL, Action.SEND, Protection.TLS_ENFORCED, "level:confidential",
                        (Step(Protection.TLS_ENFORCED, True, "MX offers STARTTLS"),))
    audit_store.append_many_sync([
        MessageAccepted("M200", 1_780_000_000.0, "<m200@firm.test>", "sagsbehandler@firm.test", 9000, (rcpt,),
                        "127.0.0.1"),
        MessageClassified("M200", 1_780_000_001.0, classification),
        RecipientDecided("M200", 1_780_000_002.0, decision),
        # a delivery fault: out in clear although the decision required TLS
        RecipientUpdated("M200", 1_780_000_003.0, rcpt, RecipientStatus.DELIVERED, "250 ok",
                         TlsSession("mx.revision.test", None, None, False)),
    ])
    (incident,) = audit_store.incidents()
    assert incident["data_subjects_estimate"] == 200
    record = audit_store.record("M200")
    assert record is not None and not any(n in json.dumps(record) for n in numbers)
    assert audit_store.verify().ok
