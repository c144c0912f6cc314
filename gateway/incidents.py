"""Incident records: the breach log GDPR art. 33(5) asks the controller to keep.

An incident is opened automatically when protected mail left below its policy
(an administrator's release with a weaker protection, or the audit seeing a
confidential/sensitive message delivered in clear), or by hand for a
misconfiguration found afterwards. The compliance officer completes it through
the CLI; every change is an appended, hash-chained audit event with who changed
what. The 72-hour deadline (art. 33(1)) runs from `discovered_at`.

The records themselves live in the audit store (`gateway.audit`), so all nodes
and the report see the same list; this module holds what the CLI and the report
need to read and edit them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway.audit import AuditError, format_time, parse_time

STATUSES = ("open", "closed")


@dataclass(frozen=True)
class EditableField:
    name: str  # key in the incident record
    option: str  # CLI option
    help: str
    kind: str  # "text", "time", "bool", "int", "list", "status"


FIELDS = (
    EditableField("status", "--status", "open or closed", "status"),
    EditableField("discovered_at", "--discovered-at", "when the breach was discovered (starts the 72 hours)", "time"),
    EditableField("what_happened", "--what-happened", "what happened (hændelsesforløb)", "text"),
    EditableField("cause", "--cause", "the cause (årsag)", "text"),
    EditableField("data_categories", "--data-categories", "categories of personal data, comma separated", "list"),
    EditableField("data_subjects_estimate", "--data-subjects", "number of data subjects affected (estimate)", "int"),
    EditableField("likely_consequences", "--likely-consequences", "likely consequences for the data subjects", "text"),
    EditableField("remedial_measures", "--remedial-measures", "measures taken or proposed", "text"),
    EditableField("datatilsynet_notified", "--datatilsynet-notified", "yes or no", "bool"),
    EditableField("datatilsynet_notified_at", "--notified-at", "when Datatilsynet was notified", "time"),
    EditableField("notes", "--notes", "free text (e.g. why no notification was needed)", "text"),
)


def convert(field: EditableField, value: str) -> Any:
    """The CLI's text as the stored value; AuditError with one clear line if it does not fit."""
    if field.kind == "text":
        return value
    if field.kind == "time":
        return parse_time(value)
    if field.kind == "list":
        return [part.strip() for part in value.split(",") if part.strip()]
    if field.kind == "int":
        if not value.isdigit():
            raise AuditError(f"{field.option} must be a whole number, not {value!r}")
        return int(value)
    if field.kind == "bool":
        if value.lower() in ("yes", "ja", "true", "1"):
            return True
        if value.lower() in ("no", "nej", "false", "0"):
            return False
        raise AuditError(f"{field.option} must be yes or no, not {value!r}")
    if value not in STATUSES:
        raise AuditError(f"{field.option} must be open or closed, not {value!r}")
    return value


def changes_from(values: dict[str, str | None], now: float | None = None) -> dict[str, Any]:
    changes = {f.name: convert(f, text) for f in FIELDS if (text := values.get(f.name)) is not None}
    if changes.get("datatilsynet_notified") is True and "datatilsynet_notified_at" not in changes:
        changes["datatilsynet_notified_at"] = time.time() if now is None else now
    return changes


def notified_late_by(incident: dict[str, Any]) -> float | None:
    """Seconds past the 72 hours at which Datatilsynet was notified; None if notified in time (or not)."""
    at = incident.get("datatilsynet_notified_at")
    if not incident.get("datatilsynet_notified") or at is None or float(at) <= float(incident["deadline"]):
        return None
    return float(at) - float(incident["deadline"])


def deadline_state(incident: dict[str, Any], now: float | None = None) -> str:
    """"notified", "notified late", "closed", "overdue" or "open" (the 72 hours still running).

    Art. 33(1): a notification after 72 hours must come with the reasons for the
    delay, so a late one is told apart from one in time.
    """
    now = time.time() if now is None else now
    if incident.get("datatilsynet_notified"):
        return "notified late" if notified_late_by(incident) is not None else "notified"
    if incident.get("status") == "closed":
        return "closed"
    return "overdue" if now > float(incident["deadline"]) else "open"


def deadline_text(incident: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    state = deadline_state(incident, now)
    when = format_time(incident["deadline"])
    if state == "notified":
        return f"{when} (Datatilsynet notified {format_time(incident.get('datatilsynet_notified_at'))})"
    if state == "notified late":
        late = (notified_late_by(incident) or 0.0) / 3600
        return (f"{when} (Datatilsynet notified LATE {format_time(incident.get('datatilsynet_notified_at'))}, "
                f"{late:.0f} h after the deadline)")
    if state == "closed":
        return f"{when} (closed without notification)"
    hours = (float(incident["deadline"]) - now) / 3600
    return f"{when} (OVERDUE by {-hours:.0f} h)" if hours < 0 else f"{when} ({hours:.0f} h left)"
