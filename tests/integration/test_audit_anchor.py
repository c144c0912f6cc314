"""`log verify --expect-head`: a head hash kept outside the database catches a chain rebuilt from scratch.

Whoever can write the audit database can delete every row and append a doctored
history through the store: the new chain is internally consistent and a plain
`verify` passes. A head noted earlier (printed by `log verify`) is not in it.
"""

from __future__ import annotations

import json
from pathlib import Path

from gateway.audit import AuditStore
from gateway.config import Config
from gateway.events import RecipientStatus
from policy.model import Level, Protection
from tests.fixtures.compliance import Outcome, message_events
from tests.integration.test_audit_cli import T0, sikkermail, tamper


def history(store: AuditStore, *, m1_protection: Protection, m1_tls: str | None) -> None:
    store.append_many_sync(message_events("M0", T0, Level.PUBLIC, [
        Outcome("r0@kunde0.test", Protection.TLS_OPPORTUNISTIC, RecipientStatus.DELIVERED)]))
    store.append_many_sync(message_events("M1", T0 + 3600, Level.CONFIDENTIAL, [
        Outcome("r1@kunde1.test", m1_protection, RecipientStatus.DELIVERED, tls_version=m1_tls)],
        cpr_samples=("010190-xxxx",)))


def noted_head(config: Path) -> tuple[int, str]:
    result = sikkermail(config, "log", "verify", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    return report["events"], report["head_hash"]


def test_a_wholesale_rewrite_passes_plain_verify_but_not_the_noted_head(
        audit_store: AuditStore, cfg: Config, compliance_config: Path) -> None:
    # the real history: M1, confidential, went out in clear (an incident)
    history(audit_store, m1_protection=Protection.TLS_ENFORCED, m1_tls=None)
    events, head = noted_head(compliance_config)
    assert len(audit_store.incidents()) == 1

    # more traffic later does not invalidate the noted head: it stays at its position
    audit_store.append_many_sync(message_events("M2", T0 + 7200, Level.PUBLIC, [
        Outcome("r2@kunde2.test", Protection.TLS_OPPORTUNISTIC, RecipientStatus.DELIVERED)]))
    for anchor in (head, f"{events}:{head}"):
        result = sikkermail(compliance_config, "log", "verify", "--expect-head", anchor)
        assert result.returncode == 0, result.stdout + result.stderr

    # the doctored history: every row gone, M1 re-told as S/MIME, no incident
    tamper(cfg, ("DELETE FROM events", ()), ("DELETE FROM messages", ()), ("DELETE FROM recipients", ()),
           ("DELETE FROM incidents", ()), ("UPDATE chain_head SET seq = 0, hash = ? WHERE id = 1", ("0" * 64,)))
    history(audit_store, m1_protection=Protection.SMIME, m1_tls="TLSv1.3")
    assert audit_store.incidents() == []
    plain = sikkermail(compliance_config, "log", "verify")
    assert plain.returncode == 0, plain.stdout  # internally consistent: this alone cannot tell

    for anchor in (head, f"{events}:{head}"):
        result = sikkermail(compliance_config, "log", "verify", "--expect-head", anchor)
        assert result.returncode == 1
        assert "BROKEN" in result.stdout and "expected head" in result.stdout and "rewritten" in result.stdout


def test_the_noted_head_must_be_at_its_position_and_well_formed(
        audit_store: AuditStore, compliance_config: Path) -> None:
    history(audit_store, m1_protection=Protection.SMIME, m1_tls="TLSv1.3")
    events, head = noted_head(compliance_config)
    wrong_place = sikkermail(compliance_config, "log", "verify", "--expect-head", f"{events - 1}:{head}")
    assert wrong_place.returncode == 1 and "expected head" in wrong_place.stdout
    garbage = sikkermail(compliance_config, "log", "verify", "--expect-head", "not-a-hash")
    assert garbage.returncode == 1 and "not a SHA-256 head hash" in garbage.stderr
    assert "Traceback" not in garbage.stderr
