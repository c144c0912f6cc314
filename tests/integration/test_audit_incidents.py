"""`sikkermail incidents`: the breach log, edited by the compliance officer, every edit on record."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.audit import AuditStore
from gateway.cli import main
from gateway.events import RecipientStatus
from gateway.incidents import deadline_state
from policy.model import Level, Protection
from tests.fixtures.compliance import Outcome, message_events


def cli(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main([*args, "-c", str(config)])
    out, err = capsys.readouterr()
    return status, out, err


def test_officer_completes_an_incident(audit_store: AuditStore, compliance_config: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    audit_store.append_many_sync(message_events("M1", now - 3600, Level.SENSITIVE, [
        Outcome("borger@mail.test", Protection.TLS_VERIFIED, RecipientStatus.DELIVERED, tls_version=None)],
        cpr_samples=("010190-xxxx", "121265-xxxx")))
    status, out, _ = cli(compliance_config, capsys, "incidents", "list", "--json")
    (incident,) = json.loads(out)
    assert status == 0 and incident["deadline_state"] == "open"
    assert incident["data_subjects_estimate"] == 2
    assert "art9.health (sensitive)" in incident["data_categories"]

    status, out, err = cli(compliance_config, capsys, "incidents", "update", incident["id"],
                           "--likely-consequences", "health data readable in transit",
                           "--remedial-measures", "recipient domain blocked until TLS fixed",
                           "--datatilsynet-notified", "yes", "--operator", "dpo", "--json")
    assert status == 0, err
    updated = json.loads(out)
    assert updated["datatilsynet_notified"] is True and updated["datatilsynet_notified_at"] is not None
    assert {h["field"] for h in updated["history"]} == {
        "likely_consequences", "remedial_measures", "datatilsynet_notified", "datatilsynet_notified_at"}
    assert all(h["operator"] == "dpo" for h in updated["history"])
    assert deadline_state(updated) == "notified"

    status, out, _ = cli(compliance_config, capsys, "incidents", "show", incident["id"])
    assert status == 0 and "health data readable in transit" in out and "72-hour deadline" in out
    assert audit_store.verify().ok


def test_discovery_time_moves_the_deadline_and_overdue_shows(audit_store: AuditStore, compliance_config: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = cli(compliance_config, capsys, "incidents", "open", "--what-happened",
                           "TLS check disabled in config for a week", "--discovered-at", "4d", "--json")
    assert status == 0, err
    incident = json.loads(out)
    assert incident["deadline"] == pytest.approx(incident["discovered_at"] + 72 * 3600)
    assert deadline_state(incident) == "overdue"
    status, out, _ = cli(compliance_config, capsys, "incidents", "list", "--status", "open")
    assert "OVERDUE" in out


def test_bad_values_are_one_line_errors(audit_store: AuditStore, compliance_config: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    opened = audit_store.open_incident(operator="dpo", fields={"what_happened": "x"})
    status, _, err = cli(compliance_config, capsys, "incidents", "update", opened["id"], "--data-subjects", "many")
    assert status == 1 and "whole number" in err
    status, _, err = cli(compliance_config, capsys, "incidents", "update", opened["id"])
    assert status == 1 and "nothing to update" in err
    status, _, err = cli(compliance_config, capsys, "incidents", "update", "INC-1999-0001", "--cause", "x")
    assert status == 1 and "no incident" in err
