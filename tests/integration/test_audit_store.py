"""The audit store on SQLite and on a real PostgreSQL server: records, search, chain."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gateway.audit import AuditStore, OperatorAction, SearchFilter
from gateway.events import MessageAccepted, RecipientStatus, RecipientUpdated, TlsSession
from policy.model import Action, Level, Protection
from tests.fixtures.compliance import Outcome, message_events

T0 = 1_790_000_000.0


def feed(store: AuditStore, events: list) -> None:
    async def run() -> None:
        for event in events:
            await store.append(event)

    asyncio.run(run())


def test_record_is_the_fold_of_its_events(audit_store: AuditStore) -> None:
    feed(audit_store, message_events("M1", T0, Level.SENSITIVE, [
        Outcome("anna@advokat.test", Protection.SMIME, RecipientStatus.DELIVERED, cert_found=True),
        Outcome("klient@mail.test", None, RecipientStatus.QUARANTINED, action=Action.QUARANTINE,
                tls_possible=False),
    ], cpr_samples=("010190-xxxx",), quarantine_id="Q1"))
    record = audit_store.record("M1")
    assert record is not None
    assert record["sender"] == "sagsbehandler@kommune.test"
    assert record["size"] == 12345
    assert record["classification"]["level"] == "sensitive"
    assert record["policy_rule"] == "level:sensitive"
    assert record["quarantine_id"] == "Q1"
    by_address = {r["address"]: r for r in record["recipients"]}
    smime = by_address["anna@advokat.test"]
    assert smime["status"] == "delivered"
    assert smime["certificate"]["sha256"] == "ab" * 32
    assert smime["cipher"] == "aes256-cbc/rsa-pkcs1v15"
    assert smime["tls"]["version"] == "TLSv1.3"
    held = by_address["klient@mail.test"]
    assert held["status"] == "quarantined" and held["quarantine_id"] == "Q1"
    assert "MX does not offer STARTTLS" in held["reason"]
    assert len(record["hash"]) == 64 and record["prev_hash"] == "0" * 64
    assert audit_store.verify().ok


def test_updates_are_appended_not_rewritten(audit_store: AuditStore) -> None:
    feed(audit_store, message_events("M2", T0, Level.CONFIDENTIAL, [
        Outcome("a@b.test", Protection.TLS_VERIFIED, RecipientStatus.DEFERRED)]))
    first_hash = audit_store.record("M2")["hash"]
    feed(audit_store, [RecipientUpdated(id="M2", at=T0 + 600, address="a@b.test", status=RecipientStatus.DELIVERED,
                                        smtp_response="250 ok", tls=TlsSession("mx.b.test", "TLSv1.2", "ECDHE", True))])
    record = audit_store.record("M2")
    assert record["recipients"][0]["status"] == "delivered"
    assert record["recipients"][0]["updated_at"] == T0 + 600
    assert record["hash"] != first_hash
    result = audit_store.verify()
    assert result.ok and result.events == 5


def test_no_subject_unless_configured_and_identifiers_masked(audit_store: AuditStore) -> None:
    feed(audit_store, message_events("M3", T0, Level.CONFIDENTIAL, [
        Outcome("a@b.test", Protection.TLS_VERIFIED, RecipientStatus.DELIVERED)],
        subject="Sag om 0101901234", cpr_samples=("0202801234",)))
    record = audit_store.record("M3")
    assert "subject" not in record
    text = json.dumps(record)
    assert "0202801234" not in text and "020280-xxxx" in text


def test_subject_kept_masked_when_configured(cfg, tmp_path) -> None:
    import dataclasses

    from gateway.audit import open_audit

    with_subject = dataclasses.replace(cfg, audit=dataclasses.replace(cfg.audit, include_subject=True))
    store = open_audit(with_subject)
    try:
        feed(store, [MessageAccepted("M4", T0, None, "s@x.test", 10, ("r@y.test",), "127.0.0.1",
                                     subject="Sag om 010190-1234")])
        assert store.record("M4")["subject"] == "Sag om 010190-xxxx"
    finally:
        store.close_sync()


def test_search_filters(audit_store: AuditStore) -> None:
    events = []
    events += message_events("A", T0, Level.PUBLIC, [
        Outcome("x@one.test", Protection.TLS_OPPORTUNISTIC, RecipientStatus.DELIVERED)], sender="jens@kommune.test")
    events += message_events("B", T0 + 3600, Level.CONFIDENTIAL, [
        Outcome("y@two.test", Protection.SMIME, RecipientStatus.DELIVERED, cert_found=True),
        Outcome("z@three.test", Protection.TLS_ENFORCED, RecipientStatus.BOUNCED)], sender="mette@kommune.test")
    events += message_events("C", T0 + 7200, Level.SENSITIVE, [
        Outcome("w_1@two.test", Protection.TLS_VERIFIED, RecipientStatus.DELIVERED)], sender="jens@kommune.test")
    audit_store.append_many_sync(events)

    def ids(**kw: object) -> list[str]:
        return [r["id"] for r in audit_store.search(SearchFilter(**kw))]

    assert ids() == ["A", "B", "C"]
    assert ids(since=T0 + 1, until=T0 + 7200) == ["B"]
    assert ids(sender="JENS@") == ["A", "C"]
    assert ids(recipient="two.test") == ["B", "C"]
    assert ids(recipient="w_1") == ["C"]
    assert ids(recipient="w%") == []
    assert ids(level="sensitive") == ["C"]
    assert ids(protection="smime") == ["B"]
    assert ids(status="bounced") == ["B"]
    assert ids(protection="smime", status="bounced") == []  # both on the same recipient
    assert ids(limit=2) == ["A", "B"]


def test_operator_actions_join_the_record(audit_store: AuditStore) -> None:
    audit_store.append_many_sync(message_events("M5", T0, Level.PUBLIC, [
        Outcome("x@one.test", Protection.TLS_OPPORTUNISTIC, RecipientStatus.DELIVERED)]))
    audit_store.append_sync(OperatorAction(at=T0 + 50, operator="hanne", action="quarantine.delete",
                                           target="Q9", reason="sent by mistake", message="M5"))
    record = audit_store.record("M5")
    assert record["operator_actions"][0]["operator"] == "hanne"
    assert record["operator_actions"][0]["reason"] == "sent by mistake"
    assert [a["target"] for a in audit_store.operator_actions()] == ["Q9"]
    assert audit_store.verify().ok


def test_protected_mail_delivered_in_clear_opens_an_incident(audit_store: AuditStore) -> None:
    audit_store.append_many_sync(message_events("M6", T0, Level.CONFIDENTIAL, [
        Outcome("x@one.test", Protection.TLS_ENFORCED, RecipientStatus.DELIVERED, tls_version=None)],
        cpr_samples=("010190-xxxx", "020280-xxxx", "010190-xxxx")))
    audit_store.append_many_sync(message_events("M7", T0, Level.PUBLIC, [
        Outcome("x@one.test", Protection.TLS_OPPORTUNISTIC, RecipientStatus.DELIVERED, tls_version=None)]))
    incidents = audit_store.incidents()
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident["messages"] == ["M6"] and incident["recipients"] == ["x@one.test"]
    assert incident["data_subjects_estimate"] == 2
    assert incident["data_categories"] == ["cpr (confidential)"]
    assert incident["deadline"] == incident["discovered_at"] + 72 * 3600
    assert audit_store.record("M6")["incidents"] == [incident["id"]]


def test_incident_updates_are_audited(audit_store: AuditStore) -> None:
    opened = audit_store.open_incident(operator="dpo", fields={"what_happened": "wrong recipient"}, at=T0)
    updated = audit_store.update_incident(opened["id"], operator="dpo", at=T0 + 10,
                                          changes={"datatilsynet_notified": True,
                                                   "datatilsynet_notified_at": T0 + 10})
    assert updated["datatilsynet_notified"] is True
    assert updated["history"][0]["field"] == "datatilsynet_notified"
    assert updated["history"][0]["operator"] == "dpo"
    assert audit_store.verify().ok
    with pytest.raises(Exception, match="unknown incident field"):
        audit_store.update_incident(opened["id"], operator="dpo", changes={"colour": "red"})


def test_two_stores_on_one_database_keep_one_chain(cfg) -> None:
    """Two nodes (or the gateway and the CLI) writing at once never fork the chain."""
    import threading

    from gateway.audit import open_audit

    stores = [open_audit(cfg), open_audit(cfg)]
    try:
        def write(store: AuditStore, prefix: str) -> None:
            for i in range(15):
                store.append_many_sync(message_events(f"{prefix}{i}", T0 + i, Level.PUBLIC, [
                    Outcome("x@one.test", Protection.TLS_OPPORTUNISTIC, RecipientStatus.DELIVERED)]))

        threads = [threading.Thread(target=write, args=(s, p)) for s, p in zip(stores, "XY", strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        result = stores[0].verify()
        assert result.ok, result.problems
        assert result.events == 30 * 4
    finally:
        for store in stores:
            store.close_sync()


def test_append_does_not_block_the_event_loop(audit_store: AuditStore) -> None:
    """While appends run in the store's thread, the loop keeps ticking."""
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set() and ticks < 100_000:
            ticks += 1
            await asyncio.sleep(0)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        for i in range(20):
            for event in message_events(f"L{i}", time.time(), Level.PUBLIC, [
                    Outcome("x@one.test", Protection.TLS_OPPORTUNISTIC, RecipientStatus.DELIVERED)]):
                await audit_store.append(event)
        stop.set()
        await task

    asyncio.run(run())
    assert ticks > 80  # the loop ran between (and during) the 80 appends
