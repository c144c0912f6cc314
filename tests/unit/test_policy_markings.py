"""Sender markings: subject tags, Sensitivity header, Purview labels; they only raise."""

from __future__ import annotations

from dataclasses import replace
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.classify import classify_message
from policy.markings import classify_markings, msip_labels
from policy.model import Level
from policy.policyfile import Markings, Policy

GUID = "d9f23ae3-a239-45ea-bf23-f515f824c57b"
MARKINGS = Markings(
    subject_tags={"[fortrolig]": Level.CONFIDENTIAL, "[følsom]": Level.SENSITIVE,
                  "[offentlig]": Level.PUBLIC},
    headers={"sensitivity": {"private": Level.CONFIDENTIAL, "normal": Level.PUBLIC}},
    msip_labels={"fortrolig": Level.CONFIDENTIAL, GUID: Level.SENSITIVE},
)
POLICY = replace(Policy.builtin(), markings=MARKINGS)


def message(subject: str, body: str = "Hej.", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["Subject"] = subject
    for key, value in headers.items():
        msg[key] = value
    msg.set_content(body)
    return msg.as_bytes()


def test_subject_tag_in_encoded_subject_raises() -> None:
    result = classify_message(message("[Følsom] Notat om borgeren"), POLICY)
    assert result.level is Level.SENSITIVE and result.marking == "[følsom]"


def test_sensitivity_header_raises() -> None:
    result = classify_message(message("Notat", Sensitivity="Private"), POLICY)
    assert result.level is Level.CONFIDENTIAL
    assert result.marking == "sensitivity: Private"


def test_msip_label_by_name_and_by_guid() -> None:
    by_name = (f"MSIP_Label_{GUID.replace('d9', 'aa')}_Enabled=true; "
               f"MSIP_Label_{GUID.replace('d9', 'aa')}_Name=Fortrolig; "
               f"MSIP_Label_{GUID.replace('d9', 'aa')}_SiteId=1234")
    assert classify_message(message("x", msip_labels=by_name), POLICY).level is Level.CONFIDENTIAL
    by_guid = f"MSIP_Label_{GUID}_Enabled=true; MSIP_Label_{GUID}_Name=Whatever"
    assert classify_message(message("x", msip_labels=by_guid), POLICY).level is Level.SENSITIVE


def test_disabled_msip_label_is_ignored() -> None:
    value = f"MSIP_Label_{GUID}_Enabled=false; MSIP_Label_{GUID}_Name=Følsom"
    assert msip_labels(value) == []


def test_public_marking_does_not_lower_content() -> None:
    result = classify_message(message("[offentlig] svar", "CPR 070761-4285", Sensitivity="Normal"),
                              POLICY)
    assert result.level is Level.CONFIDENTIAL


def test_markings_only_classifier_is_not_scanned() -> None:
    import email

    parsed = email.message_from_bytes(message("[fortrolig] x", "diagnose depression sygemeldt"))
    result = classify_markings(parsed, MARKINGS)
    assert result.level is Level.CONFIDENTIAL and not result.scanned


_BODIES = ["Hej, vi ses i morgen.", "CPR 070761-4285", "diagnosen er depression, sygemeldt",
           "straffeattest med betinget dom", "IBAN DK50 0040 0440 1162 43"]
_TAGS = ["", "[fortrolig] ", "[følsom] ", "[offentlig] "]
_SENSITIVITY = [None, "Private", "Normal", "Personal"]


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(_BODIES), st.sampled_from(_TAGS), st.sampled_from(_SENSITIVITY))
def test_a_marking_never_lowers_a_level(body: str, tag: str, sensitivity: str | None) -> None:
    unmarked = classify_message(message("Besked", body), POLICY)
    headers = {"Sensitivity": sensitivity} if sensitivity else {}
    marked = classify_message(message(tag + "Besked", body, **headers), POLICY)
    assert marked.level.rank >= unmarked.level.rank
    marks = [e for e in marked.evidence if e.detector.startswith("marking.")]
    for mark in marks:
        assert marked.level.rank >= mark.level.rank
