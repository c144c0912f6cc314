"""Held messages: private at rest, released/deleted/purged only on record.

Each test runs with the audit database on SQLite (held messages in the node's
quarantine folder) and on PostgreSQL (held messages in the shared `quarantine`
table); `is_held` and `age_held` reach into whichever storage the config picks.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from gateway.audit import open_audit
from gateway.cli import main
from gateway.config import Config
from gateway.quarantine import NotHeldError, QuarantineStore
from gateway.spool import Envelope, Kind, Spool, State
from policy.model import Action, Classification, Decision, Evidence, Level, Protection, Step

BODY = b"From: a@kommune.test\r\nTo: b@klient.test\r\nSubject: Sag\r\n\r\nCPR 010190-1234 journal\r\n"


def hold_one(cfg: Config, tmp_path: Path, level: Level = Level.CONFIDENTIAL) -> str:
    message = tmp_path / "incoming-message"
    message.write_bytes(BODY)
    envelope = Envelope(id="0190000000000ABCDEF0123", sender="a@kommune.test",
                        recipients=("b@klient.test", "c@advokat.test"), received_at=time.time())
    steps = (Step(Protection.SMIME, False, "no certificate for b@klient.test in OCES directory"),
             Step(Protection.TLS_VERIFIED, False, "klient.test MX does not offer STARTTLS"),
             Step(Protection.TLS_ENFORCED, False, "klient.test MX does not offer STARTTLS"))
    if level is Level.SENSITIVE:
        steps = steps[:2]  # the shipped policy: smime or verified TLS only
    decisions = [
        Decision("b@klient.test", level, Action.QUARANTINE, None, f"level:{level}", steps),
        Decision("c@advokat.test", level, Action.SEND, Protection.SMIME, f"level:{level}",
                 (Step(Protection.SMIME, True, "certificate found"),)),
    ]
    classification = Classification(level, (Evidence("cpr", Level.CONFIDENTIAL, 1, ("0101901234",), ("body",)),))
    return QuarantineStore(cfg).hold(envelope, message, decisions, classification)


def is_held(cfg: Config, quarantine_id: str) -> bool:
    try:
        QuarantineStore(cfg).get(quarantine_id)
    except NotHeldError:
        return False
    return True


def age_held(cfg: Config, quarantine_id: str, seconds: float) -> None:
    """Move a held message's `held_at` back in time, in its folder or its row."""
    if cfg.sqlite_path is not None:
        meta = Path(cfg.quarantine.path) / quarantine_id / "meta.json"
        data = json.loads(meta.read_text())
        data["held_at"] -= seconds
        meta.write_text(json.dumps(data))
        return
    import psycopg

    with psycopg.connect(cfg.audit.database) as conn:
        (text,) = conn.execute("SELECT meta FROM quarantine WHERE id = %s", (quarantine_id,)).fetchone()
        data = json.loads(text)
        data["held_at"] -= seconds
        conn.execute("UPDATE quarantine SET meta = %s WHERE id = %s", (json.dumps(data), quarantine_id))


def cli(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main([*args, "-c", str(config)])
    out, err = capsys.readouterr()
    return status, out, err


def test_held_message_is_private_with_its_reasons(cfg: Config, tmp_path: Path) -> None:
    qid = hold_one(cfg, tmp_path)
    if cfg.sqlite_path is not None:
        folder = Path(cfg.quarantine.path) / qid
        assert stat.S_IMODE(os.stat(cfg.quarantine.path).st_mode) == 0o700
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for name in ("message", "meta.json"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
        stored, meta_text = (folder / "message").read_bytes(), (folder / "meta.json").read_text()
    else:
        import psycopg

        assert not (Path(cfg.quarantine.path) / qid).exists()  # shared: nothing of it on this node's disk
        with psycopg.connect(cfg.audit.database) as conn:
            meta_text, message = conn.execute("SELECT meta, message FROM quarantine WHERE id = %s",
                                              (qid,)).fetchone()
        stored = bytes(message)
    assert stored == BODY
    assert "1234" not in meta_text.replace("ABCDEF0123", "")  # neither body nor the CPR in clear
    held = QuarantineStore(cfg).get(qid)
    assert held.recipients == ("b@klient.test",)
    assert "does not offer STARTTLS" in held.reasons["b@klient.test"]
    assert held.allowed == (Protection.SMIME, Protection.TLS_VERIFIED, Protection.TLS_ENFORCED)
    assert [h.id for h in QuarantineStore(cfg).list_held()] == [qid]


def test_list_and_show(cfg: Config, tmp_path: Path, compliance_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qid = hold_one(cfg, tmp_path)
    status, out, _ = cli(compliance_config, capsys, "quarantine", "list")
    assert status == 0 and qid in out and "1 held message(s)" in out
    status, out, _ = cli(compliance_config, capsys, "quarantine", "show", qid, "--json")
    assert status == 0 and json.loads(out)["reasons"]["b@klient.test"].startswith("no certificate")
    status, _, err = cli(compliance_config, capsys, "quarantine", "show", "../../etc")
    assert status == 1 and "not a quarantine id" in err


def test_release_within_policy_requeues_and_is_audited(cfg: Config, tmp_path: Path, compliance_config: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    qid = hold_one(cfg, tmp_path)
    status, out, err = cli(compliance_config, capsys, "quarantine", "release", qid, "--reason",
                           "recipient confirmed TLS is fixed", "--operator", "hanne", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["protection"] == "tls-enforced" and result["incident"] is None
    spool = Spool(cfg.spool.path)
    envelope = spool.envelope(result["spool_id"], State.INCOMING)
    assert envelope.kind is Kind.RELEASE and envelope.override_protection == "tls-enforced"
    assert envelope.origin == qid and envelope.recipients == ("b@klient.test",)
    assert spool.message_path(result["spool_id"], State.INCOMING).read_bytes() == BODY
    assert not is_held(cfg, qid)
    store = open_audit(cfg)
    try:
        actions = store.record("0190000000000ABCDEF0123")["operator_actions"]
        assert [a["action"] for a in actions] == ["quarantine.release", "quarantine.requeued"]
        assert actions[0]["operator"] == "hanne" and actions[0]["reason"] == "recipient confirmed TLS is fixed"
        assert actions[1]["details"]["spool_id"] == result["spool_id"]
        assert store.incidents() == []
        assert store.verify().ok
    finally:
        store.close_sync()


def test_release_below_policy_opens_an_incident(cfg: Config, tmp_path: Path, compliance_config: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    qid = hold_one(cfg, tmp_path, Level.SENSITIVE)
    status, out, err = cli(compliance_config, capsys, "quarantine", "release", qid, "--reason", "client insists",
                           "--protection", "tls-enforced", "--operator", "hanne")
    assert status == 0, err
    assert "below policy: incident INC-" in out
    store = open_audit(cfg)
    try:
        (incident,) = store.incidents()
        assert incident["quarantine_id"] == qid and incident["status"] == "open"
        assert "client insists" in incident["cause"]
        assert incident["data_subjects_estimate"] == 1
        assert incident["deadline"] - incident["discovered_at"] == 72 * 3600
        record = store.record("0190000000000ABCDEF0123")
        assert record["operator_actions"][0]["details"]["incident"] == incident["id"]
    finally:
        store.close_sync()


def test_delete_is_audited_and_needs_a_reason(cfg: Config, tmp_path: Path, compliance_config: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    qid = hold_one(cfg, tmp_path)
    with pytest.raises(SystemExit) as usage:
        main(["quarantine", "delete", qid, "-c", str(compliance_config)])
    assert usage.value.code == 2
    capsys.readouterr()
    status, out, err = cli(compliance_config, capsys, "quarantine", "delete", qid, "--reason", "sent by mistake")
    assert status == 0, err
    assert not is_held(cfg, qid)
    store = open_audit(cfg)
    try:
        (action,) = store.operator_actions()
        assert action["action"] == "quarantine.delete" and action["reason"] == "sent by mistake"
        assert action["operator"]  # the OS user when --operator is not given
    finally:
        store.close_sync()
    status, _, err = cli(compliance_config, capsys, "quarantine", "delete", qid, "--reason", "again")
    assert status == 1 and "no held message" in err


def test_purge_removes_only_expired_and_is_audited(cfg: Config, tmp_path: Path, compliance_config: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    old, new = hold_one(cfg, tmp_path), hold_one(cfg, tmp_path)
    age_held(cfg, old, 31 * 86400)
    status, out, err = cli(compliance_config, capsys, "quarantine", "purge", "--operator", "cron")
    assert status == 0, err
    assert "purged 1 " in out
    assert [h.id for h in QuarantineStore(cfg).list_held()] == [new]
    store = open_audit(cfg)
    try:
        (action,) = store.operator_actions()
        assert action["action"] == "quarantine.purge" and action["target"] == old
        assert "30 days" in action["reason"] and action["operator"] == "cron"
    finally:
        store.close_sync()
