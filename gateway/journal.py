"""A message's journal folded into its current state.

The journal is append-only JSON lines in the message's spool folder; the state
of every recipient is derived from it, never stored anywhere else, so a restart
resumes from the disk alone. Record kinds:

    {"e": "classified", "level", "evidence", "marking", "scanned", "unscannable"}
    {"e": "decided", "rcpt", "action", "protection", "level", "rule", "reason", "payload", ...}
    {"e": "status", "rcpt", "status", "response", "tls", "quarantine_id"}
    {"e": "attempt", "at", "next"}
    {"e": "notified", "what", "id"}      (a DSN or sender notice was queued)
    {"e": "holding", "quarantine_id", "rcpts"}  (a hold begins under this id; a hold
                                          repeated after a crash reuses it)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.events import RecipientStatus
from policy.model import Classification, Evidence, Level


@dataclass
class RecipientState:
    address: str
    action: str | None = None  # the latest decision's action
    protection: str | None = None
    level: str | None = None
    reason: str = ""
    rule: str = ""  # the policy rule behind the latest decision
    payload: str | None = None  # which file in the message folder to send
    status: RecipientStatus = RecipientStatus.QUEUED
    response: str = ""
    tls: dict[str, Any] | None = None  # what the delivering connection negotiated
    quarantine_id: str | None = None

    @property
    def final(self) -> bool:
        return self.status.final


@dataclass
class MessageState:
    recipients: dict[str, RecipientState]
    classification: Classification | None = None
    attempts: int = 0
    next_attempt: float | None = None
    notified: set[str] = field(default_factory=set)
    holding: dict[str, str] = field(default_factory=dict)  # recipient -> quarantine id of a begun hold

    def pending(self) -> list[RecipientState]:
        return [r for r in self.recipients.values() if not r.final]

    @property
    def complete(self) -> bool:
        return not self.pending()


def classification_record(classification: Classification) -> dict[str, Any]:
    return {
        "e": "classified",
        "level": classification.level.value,
        "marking": classification.marking,
        "scanned": classification.scanned,
        "unscannable": list(classification.unscannable),
        "evidence": [
            {"detector": e.detector, "level": e.level.value, "count": e.count,
             "samples": list(e.samples), "where": list(e.where), "distinct": e.distinct}
            for e in classification.evidence
        ],
    }


def _classification(record: dict[str, Any]) -> Classification:
    evidence = tuple(
        Evidence(e["detector"], Level(e["level"]), int(e["count"]), tuple(e.get("samples", ())),
                 tuple(e.get("where", ())), int(e.get("distinct", 0)))
        for e in record.get("evidence", [])
    )
    return Classification(Level(record["level"]), evidence, record.get("marking"),
                          bool(record.get("scanned", True)), tuple(record.get("unscannable", ())))


def fold(recipients: tuple[str, ...], records: list[dict[str, Any]]) -> MessageState:
    state = MessageState({r: RecipientState(r) for r in recipients})
    for record in records:
        kind = record.get("e")
        if kind == "classified":
            state.classification = _classification(record)
        elif kind == "decided":
            r = state.recipients.get(record["rcpt"])
            if r is None or r.final:
                continue
            r.action = record["action"]
            r.protection = record.get("protection")
            r.level = record.get("level")
            r.reason = record.get("reason", "")
            r.rule = record.get("rule", "")
            r.payload = record.get("payload")
        elif kind == "status":
            r = state.recipients.get(record["rcpt"])
            if r is None or r.final:
                continue  # a final status is never taken back
            r.status = RecipientStatus(record["status"])
            r.response = record.get("response", "")
            r.tls = record.get("tls")
            r.quarantine_id = record.get("quarantine_id")
        elif kind == "attempt":
            state.attempts += 1
            state.next_attempt = record.get("next")
        elif kind == "notified":
            state.notified.add(record["what"])
        elif kind == "holding":
            for rcpt in record.get("rcpts", []):
                state.holding[rcpt] = record["quarantine_id"]
    return state
