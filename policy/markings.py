"""The sender's own marking: subject tags and marking headers. A marking only raises."""

from __future__ import annotations

from email.message import Message

from policy.model import Classification, Evidence, Level
from policy.policyfile import Markings


def marking_evidence(message: Message, markings: Markings) -> list[Evidence]:
    found: list[Evidence] = []
    subject = str(message.get("Subject", "")).lower()
    for tag, level in markings.subject_tags.items():
        if tag in subject:
            found.append(Evidence("marking.subject", level, 1, (tag,), ("subject",)))
    for header, values in markings.headers.items():
        for raw in message.get_all(header, []):
            level = values.get(str(raw).strip().lower())
            if level is not None:
                found.append(Evidence(f"marking.header", level, 1, (f"{header}: {raw}",), ("header",)))
    return found


def classify_markings(message: Message, markings: Markings) -> Classification:
    """Markings only (the content is not scanned): the relay core's classifier."""
    evidence = marking_evidence(message, markings)
    level = Level.PUBLIC
    for item in evidence:
        level = level.raised_to(item.level)
    marking = evidence[0].samples[0] if evidence else None
    return Classification(level, tuple(evidence), marking, scanned=False)
