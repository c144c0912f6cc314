"""The sender's own marking: subject tags, marking headers, Microsoft Purview labels.

A marking only raises the level: a sender can ask for more protection, never
for less (a "Sensitivity: Normal" header does not make a CPR number public).
"""

from __future__ import annotations

import re
from email.message import Message

from policy.mime import decode_header_value
from policy.model import Classification, Evidence, Level
from policy.policyfile import Markings

# msip_labels: MSIP_Label_<guid>_Enabled=true; MSIP_Label_<guid>_Name=Fortrolig; ...
_MSIP_FIELD = re.compile(r"MSIP_Label_([0-9A-Fa-f-]{36})_(\w+)\s*=\s*([^;]*)")


def msip_labels(value: str) -> list[tuple[str, str]]:
    """The enabled (guid, name) pairs of an msip_labels header value."""
    labels: dict[str, dict[str, str]] = {}
    for guid, name, raw in _MSIP_FIELD.findall(value):
        labels.setdefault(guid.lower(), {})[name.lower()] = raw.strip()
    return [(guid, attrs.get("name", "")) for guid, attrs in labels.items()
            if attrs.get("enabled", "").lower() == "true"]


def marking_evidence(message: Message, markings: Markings) -> list[Evidence]:
    found: list[Evidence] = []
    subject = decode_header_value(message.get("Subject", "")).lower()
    for tag, level in markings.subject_tags.items():
        if tag in subject:
            found.append(Evidence("marking.subject", level, 1, (tag,), ("subject",)))
    for header, values in markings.headers.items():
        for raw in message.get_all(header, []):
            text = decode_header_value(raw).strip()
            header_level = values.get(text.lower())
            if header_level is not None:
                found.append(Evidence("marking.header", header_level, 1, (f"{header}: {text}",), ("header",)))
    if markings.msip_labels:
        for raw in message.get_all("msip_labels", []):
            for guid, name in msip_labels(str(raw)):
                label_level = markings.msip_labels.get(guid) or markings.msip_labels.get(name.lower())
                if label_level is not None:
                    found.append(Evidence("marking.msip_label", label_level, 1,
                                          (f"{name or guid}",), ("header",)))
    return found


def raised_by(evidence: list[Evidence] | tuple[Evidence, ...], level: Level = Level.PUBLIC) -> Level:
    for item in evidence:
        level = level.raised_to(item.level)
    return level


def first_marking(evidence: list[Evidence]) -> str | None:
    """The strongest marking, as the audit shows it ("[fortrolig]", "Sensitivity: Private")."""
    best: Evidence | None = None
    for item in evidence:
        if best is None or item.level.rank > best.level.rank:
            best = item
    return best.samples[0] if best and best.samples else None


def classify_markings(message: Message, markings: Markings) -> Classification:
    """Markings only (the content is not scanned): the relay core's classifier."""
    evidence = marking_evidence(message, markings)
    return Classification(raised_by(evidence), tuple(evidence), first_marking(evidence), scanned=False)
