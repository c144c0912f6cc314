"""One breach, one incident: the audit never opens a second incident for the same copy of a message.

Art. 33(5) documentation counts breaches; a duplicate would double the report's
figures and the officer's work. Two ways one used to become several: the final
status re-sent after a restart (the queue's reconcile), and a held message released
below policy, which opens its incident at the release and is then delivered in clear.
"""

from __future__ import annotations

from gateway.audit import AuditStore
from gateway.events import (
    MessageAccepted,
    MessageClassified,
    RecipientDecided,
    RecipientStatus,
    RecipientUpdated,
    TlsSession,
)
from policy.model import Action, Classification, Decision, Evidence, Level, Protection, Step

AT = 1_780_000_000.0
RCPT = "klient@release.test"
CLASSIFICATION = Classification(Level.CONFIDENTIAL, (Evidence("cpr", Level.CONFIDENTIAL, 1, ("010190-xxxx",),
                                                               ("body",), 1),))


def copy_events(message: str, protection: Protection, rule: str) -> list:
    decision = Decision(RCPT, Level.CONFIDENTIAL, Action.SEND, protection, rule, (Step(protection, True, "ok"),))
    return [
        MessageAccepted(message, AT, f"<{message}@firm.test>", "sagsbehandler@firm.test", 100, (RCPT,), "local"),
        MessageClassified(message, AT + 1, CLASSIFICATION),
        RecipientDecided(message, AT + 2, decision),
        RecipientUpdated(message, AT + 3, RCPT, RecipientStatus.DELIVERED, "250 ok",
                         TlsSession("mx.release.test", None, None, False)),
    ]


def test_a_delivered_status_sent_again_after_a_restart_opens_no_second_incident(audit_store: AuditStore) -> None:
    audit_store.append_many_sync(copy_events("M1", Protection.TLS_ENFORCED, "level:confidential"))
    # the queue's reconcile after a restart re-sends the final status it finds in the journal
    audit_store.append_sync(RecipientUpdated("M1", AT + 60, RCPT, RecipientStatus.DELIVERED, "250 ok",
                                             TlsSession("mx.release.test", None, None, False)))
    assert [i["messages"] for i in audit_store.incidents()] == [["M1"]]
    assert audit_store.verify().ok


def test_a_copy_released_below_policy_is_linked_to_the_release_incident(audit_store: AuditStore) -> None:
    audit_store.append_many_sync(copy_events("M1", Protection.TLS_ENFORCED, "level:confidential")[:2])
    # what gateway.quarantine.release records for a release with tls-opportunistic
    opened = audit_store.open_incident(operator="compliance", at=AT + 10, fields={
        "discovered_at": AT + 10, "what_happened": "released below policy", "cause": "release",
        "messages": ["M1"], "recipients": [RCPT], "quarantine_id": "Q0123456789ABCDEF0"})
    copy = copy_events("M2", Protection.TLS_OPPORTUNISTIC, "release:Q0123456789ABCDEF0")
    audit_store.append_many_sync(copy)
    audit_store.append_sync(copy[-1])  # and once more, after a restart
    (incident,) = audit_store.incidents()
    assert incident["id"] == opened["id"] and incident["messages"] == ["M1", "M2"]
    record = audit_store.record("M2")
    assert record is not None and record["incidents"] == [opened["id"]]
    assert audit_store.verify().ok


def test_another_message_in_clear_is_its_own_incident(audit_store: AuditStore) -> None:
    audit_store.append_many_sync(copy_events("M1", Protection.TLS_ENFORCED, "level:confidential"))
    audit_store.append_many_sync(copy_events("M3", Protection.TLS_ENFORCED, "level:confidential"))
    assert sorted(i["messages"][0] for i in audit_store.incidents()) == ["M1", "M3"]
