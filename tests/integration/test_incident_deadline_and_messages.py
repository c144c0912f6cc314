"""Incidents: a late notification is shown as late, and an incident over several messages covers them all."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.audit import AuditStore
from gateway.cli import main
from gateway.events import RecipientStatus
from gateway.incidents import deadline_state, deadline_text
from policy.model import Level, Protection
from tests.fixtures.compliance import Outcome, message_events

HOUR = 3600.0


def cli(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main([*args, "-c", str(config)])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_notification_after_the_72_hours_is_notified_late_with_the_delay(
        audit_store: AuditStore, compliance_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    late = audit_store.open_incident(operator="dpo", fields={"what_happened": "sent in clear",
                                                              "discovered_at": now - 100 * HOUR})
    status, out, err = cli(compliance_config, capsys, "incidents", "update", late["id"],
                           "--datatilsynet-notified", "yes", "--json")
    assert status == 0, err
    assert deadline_state(json.loads(out), now) == "notified late"
    status, out, _ = cli(compliance_config, capsys, "incidents", "show", late["id"], "--json")
    assert json.loads(out)["deadline_state"] == "notified late"
    status, out, _ = cli(compliance_config, capsys, "incidents", "show", late["id"])
    assert "LATE" in out and "28 h after the deadline" in out

    in_time = audit_store.open_incident(operator="dpo", fields={
        "what_happened": "sent in clear", "discovered_at": now - 10 * HOUR, "datatilsynet_notified": True,
        "datatilsynet_notified_at": now - 5 * HOUR})
    assert deadline_state(in_time, now) == "notified"
    assert "LATE" not in deadline_text(in_time, now)
    # exactly at the deadline is still in time
    edge = {**in_time, "datatilsynet_notified_at": in_time["deadline"]}
    assert deadline_state(edge, now) == "notified"


def test_an_incident_over_several_messages_takes_all_their_categories_and_people(
        audit_store: AuditStore, compliance_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    audit_store.append_many_sync(message_events("M1", now - 7200, Level.CONFIDENTIAL, [
        Outcome("a@x.test", Protection.SMIME, RecipientStatus.DELIVERED, cert_found=True)],
        cpr_samples=("010190-xxxx", "020290-xxxx")))
    audit_store.append_many_sync(message_events("M2", now - 3600, Level.SENSITIVE, [
        Outcome("b@y.test", Protection.SMIME, RecipientStatus.DELIVERED, cert_found=True)],
        cpr_samples=("030390-xxxx", "040490-xxxx", "050590-xxxx")))
    status, out, err = cli(compliance_config, capsys, "incidents", "open", "--what-happened",
                           "wrong recipient domain in the address book", "--message", "M1", "--message", "M2",
                           "--json")
    assert status == 0, err
    incident = json.loads(out)
    assert incident["messages"] == ["M1", "M2"]
    assert incident["data_categories"] == ["art9.health (sensitive)", "cpr (confidential)"]
    assert incident["data_subjects_estimate"] == 5
    # what the officer gives explicitly wins
    status, out, err = cli(compliance_config, capsys, "incidents", "open", "--what-happened", "x",
                           "--message", "M1", "--message", "M2", "--data-subjects", "3", "--json")
    assert status == 0, err
    assert json.loads(out)["data_subjects_estimate"] == 3
