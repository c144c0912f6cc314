"""A generated month of traffic: the report's figures match what was generated."""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.audit import AuditStore, OperatorAction, parse_time
from gateway.cli import main
from gateway.events import RecipientStatus
from policy.model import Action, Level, Protection
from tests.fixtures.compliance import Outcome, message_events

S = RecipientStatus
P = Protection

# scenario -> (protection, status, action, tls version, cert found, tls possible)
SCENARIOS = {
    "smime": (P.SMIME, S.DELIVERED, Action.SEND, "TLSv1.3", True, True),
    "verified": (P.TLS_VERIFIED, S.DELIVERED, Action.SEND, "TLSv1.3", False, True),
    "enforced": (P.TLS_ENFORCED, S.DELIVERED, Action.SEND, "TLSv1.2", False, True),
    "held": (None, S.QUARANTINED, Action.QUARANTINE, None, False, False),
    "blocked": (None, S.BLOCKED, Action.BLOCK, None, False, False),
    "bounced": (P.TLS_VERIFIED, S.BOUNCED, Action.SEND, "TLSv1.3", False, True),
    "clear": (P.TLS_ENFORCED, S.DELIVERED, Action.SEND, None, False, True),  # the fault the report must show
    "public-tls": (P.TLS_OPPORTUNISTIC, S.DELIVERED, Action.SEND, "TLSv1.3", False, True),
    "public-plain": (P.TLS_OPPORTUNISTIC, S.DELIVERED, Action.SEND, None, False, False),
}


@dataclass
class Truth:
    messages_by_level: Counter[str] = field(default_factory=Counter)
    by_level_protection: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_level_status: Counter[tuple[str, str]] = field(default_factory=Counter)
    protected_left: Counter[str] = field(default_factory=Counter)
    clear: set[tuple[str, str]] = field(default_factory=set)
    public_plain: int = 0
    held: int = 0
    blocked: int = 0
    no_cert: Counter[str] = field(default_factory=Counter)
    no_tls: Counter[str] = field(default_factory=Counter)
    held_ids: list[tuple[str, str]] = field(default_factory=list)


def generate(store: AuditStore, since: float, days: int, seed: int = 2019_41_0029) -> Truth:
    rng = random.Random(seed)
    truth = Truth()
    domains = [f"kunde{i}.test" for i in range(12)]
    for day in range(days):
        events = []
        for n in range(rng.randint(6, 12)):
            message = f"D{day:02d}N{n:02d}"
            at = since + day * 86400 + rng.randint(7200, 79200)
            level = rng.choices([Level.PUBLIC, Level.CONFIDENTIAL, Level.SENSITIVE], [5, 3, 2])[0]
            outcomes = []
            qid = f"Q{message}"
            for r in range(rng.randint(1, 3)):
                domain = rng.choice(domains)
                address = f"r{r}@{domain}"
                if level is Level.PUBLIC:
                    scenario = rng.choice(["public-tls", "public-tls", "public-plain"])
                else:
                    pool = ["smime", "verified", "held", "blocked", "bounced"]
                    if level is Level.CONFIDENTIAL:
                        pool.append("enforced")
                    scenario = "clear" if rng.random() < 0.03 else rng.choice(pool)
                protection, status, action, version, cert, tls_ok = SCENARIOS[scenario]
                outcomes.append(Outcome(address, protection, status, action=action, tls_version=version,
                                        cert_found=cert, tls_possible=tls_ok))
                truth.by_level_protection[(level.value, protection.value if protection else "none")] += 1
                truth.by_level_status[(level.value, status.value)] += 1
                if level.protected:
                    if status is S.DELIVERED:
                        truth.protected_left["in clear" if scenario == "clear" else protection.value] += 1
                    if not cert:
                        truth.no_cert[domain] += 1
                    if not tls_ok or scenario == "clear":
                        truth.no_tls[domain] += 1
                if scenario == "clear":
                    truth.clear.add((message, address))
                if scenario == "public-plain":
                    truth.public_plain += 1
                if status is S.QUARANTINED:
                    truth.held += 1
                    truth.held_ids.append((message, qid))
                if status is S.BLOCKED:
                    truth.blocked += 1
            truth.messages_by_level[level.value] += 1
            events += message_events(message, at, level, outcomes, quarantine_id=qid,
                                     cpr_samples=("010190-xxxx",) if level.protected else ())
        store.append_many_sync(events)
    return truth


@pytest.fixture
def month(audit_store: AuditStore) -> tuple[AuditStore, Truth, float, float]:
    since, until = parse_time("2026-09-01"), parse_time("2026-09-30", end=True)
    truth = generate(audit_store, since, 30)
    # Traffic just outside the period must not count.
    audit_store.append_many_sync(message_events("BEFORE", since - 600, Level.SENSITIVE, [
        Outcome("x@kunde1.test", P.TLS_ENFORCED, S.DELIVERED, tls_version=None)]))
    audit_store.append_many_sync(message_events("AFTER", until + 600, Level.CONFIDENTIAL, [
        Outcome("x@kunde1.test", P.SMIME, S.DELIVERED, cert_found=True)]))
    # One held message released and one deleted, inside the period.
    (released_msg, released_q), (deleted_msg, deleted_q) = truth.held_ids[0], truth.held_ids[1]
    audit_store.append_sync(OperatorAction(at=since + 86400 * 20, operator="hanne", action="quarantine.release",
                                           target=released_q, reason="client asked", message=released_msg,
                                           details={"protection": "tls-enforced", "below_policy": False}))
    audit_store.append_sync(OperatorAction(at=since + 86400 * 21, operator="hanne", action="quarantine.delete",
                                           target=deleted_q, reason="duplicate", message=deleted_msg))
    return audit_store, truth, since, until


def report_json(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    status = main(["report", "--since", "2026-09-01", "--until", "2026-09-30", "--format", "json",
                   *extra, "-c", str(config)])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out)


def test_month_figures(month, compliance_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store, truth, _since, _until = month
    report = report_json(compliance_config, capsys)
    assert report["messages"] == sum(truth.messages_by_level.values())
    assert report["by_level"] == {level: truth.messages_by_level[level] for level in report["by_level"]}
    for level, row in report["recipients_by_level_protection"].items():
        for protection, n in row.items():
            assert n == truth.by_level_protection[(level, protection)], (level, protection)
    for level, row in report["recipients_by_level_status"].items():
        for status, n in row.items():
            assert n == truth.by_level_status[(level, status)], (level, status)
    left = report["protected_left"]
    assert left["total"] == sum(truth.protected_left.values())
    for key, figure in left["by_protection"].items():
        assert figure["count"] == truth.protected_left[key], key
        assert figure["share"] == pytest.approx(truth.protected_left[key] / left["total"])
    assert {(i["record"], i["recipient"]) for i in report["in_clear"]["protected"]} == truth.clear
    assert report["in_clear"]["protected_count"] == len(truth.clear)
    assert report["in_clear"]["public_count"] == truth.public_plain
    assert report["quarantined"]["count"] == truth.held
    assert report["quarantined"]["outcomes"]["released"] >= 1 and report["quarantined"]["outcomes"]["deleted"] >= 1
    assert sum(report["quarantined"]["outcomes"].values()) == truth.held
    assert report["blocked"]["count"] == truth.blocked
    top_cert = [(d["domain"], d["recipients"]) for d in report["domains_lacking_certificate"]]
    assert top_cert == sorted(truth.no_cert.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    top_tls = [(d["domain"], d["recipients"]) for d in report["domains_lacking_tls"]]
    assert top_tls == sorted(truth.no_tls.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert [o["operator"] for o in report["overrides"]] == ["hanne"]
    # Every protected recipient that got mail in clear opened an incident, with its deadline;
    # the one from before the period is listed too because it is still open.
    assert len(report["incidents"]) == len(truth.clear) + 1
    assert {(i["messages"][0], i["recipients"][0]) for i in report["incidents"]} == \
        truth.clear | {("BEFORE", "x@kunde1.test")}
    assert all(i["deadline"] == i["discovered_at"] + 72 * 3600 for i in report["incidents"])
    assert len(truth.clear) > 0 and truth.held > 2  # the seed exercises every branch


def test_month_csv_carries_the_same_figures(month, compliance_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store, truth, _since, _until = month
    status = main(["report", "--since", "2026-09-01", "--until", "2026-09-30", "--format", "csv",
                   "-c", str(compliance_config)])
    out, _ = capsys.readouterr()
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    lookup = {(r["section"], r["group"], r["item"]): r["value"] for r in rows}
    assert int(lookup[("totals", "", "messages")]) == sum(truth.messages_by_level.values())
    assert int(lookup[("in_clear", "protected", "count")]) == len(truth.clear)
    assert int(lookup[("recipients_by_level_protection", "sensitive", "smime")]) == \
        truth.by_level_protection[("sensitive", "smime")]


def test_empty_period_says_nothing_left_in_clear(audit_store: AuditStore, compliance_config: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["report", "--since", "2026-01-01", "--until", "2026-01-31", "--format", "html", "--lang", "en",
                   "-c", str(compliance_config)])
    out, _ = capsys.readouterr()
    assert status == 0
    assert "No: no confidential or sensitive mail left unencrypted" in out
    status = main(["report", "--since", "2026-02-01", "--until", "2026-01-01", "-c", str(compliance_config)])
    assert status == 1 and "--until must be after --since" in capsys.readouterr().err
