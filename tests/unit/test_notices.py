"""Notices to the sender: Danish then English, why and what to do, never the content."""

from __future__ import annotations

import email
import email.policy

import pytest

from gateway.notices import build_notice
from gateway.spool import Envelope
from policy.model import Action, Decision, Level, Protection, Step

ENVELOPE = Envelope(id="01900000000ABCDEF01234", sender="sagsbehandler@kommune.test",
                    recipients=("borger@mail.test", "advokat@ret.test"), received_at=0.0)

NO_CERT_NO_TLS = Decision(
    "borger@mail.test", Level.SENSITIVE, Action.QUARANTINE, None, "level:sensitive",
    (Step(Protection.SMIME, False, "no certificate for borger@mail.test in ldap:oces"),
     Step(Protection.TLS_VERIFIED, False, "mail.test MX does not offer STARTTLS")))
SMIME_ONLY = Decision(
    "advokat@ret.test", Level.SENSITIVE, Action.BLOCK, None, "recipient:ret.test",
    (Step(Protection.SMIME, False, "no certificate for advokat@ret.test"),))


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_quarantine_notice_names_recipients_reasons_and_id() -> None:
    raw = build_notice(kind="quarantine", envelope=ENVELOPE, decisions=[NO_CERT_NO_TLS], quarantine_id="Q1234",
                       subject=None, from_address="postmaster@gw.test", hostname="gw.test")
    msg = parse(raw)
    assert msg["To"] == "sagsbehandler@kommune.test"
    assert msg["From"] == "postmaster@gw.test"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"].endswith("@gw.test>")
    body = msg.get_content()
    assert body.index("tilbageholdt") < body.index("held")  # Danish first
    assert "borger@mail.test" in body and "Q1234" in body
    assert "understøtter ikke" in body and "does not support" in body
    assert "mail.test MX does not offer STARTTLS" in body
    assert "advokat@ret.test" not in body


def test_block_notice_says_smime_is_required() -> None:
    raw = build_notice(kind="block", envelope=ENVELOPE, decisions=[SMIME_ONLY], quarantine_id=None,
                       subject=None, from_address="postmaster@gw.test", hostname="gw.test")
    body = parse(raw).get_content()
    assert "kræver krypteret e-mail (S/MIME)" in body and "requires encrypted e-mail (S/MIME)" in body
    assert "Afvist" in parse(raw)["Subject"] and "quarantine id" not in body


def test_subject_only_when_passed_and_masked() -> None:
    without = build_notice(kind="quarantine", envelope=ENVELOPE, decisions=[NO_CERT_NO_TLS], quarantine_id="Q1",
                           subject=None, from_address="p@gw.test", hostname="gw.test")
    assert b"Sag om" not in without
    raw = build_notice(kind="quarantine", envelope=ENVELOPE, decisions=[NO_CERT_NO_TLS], quarantine_id="Q1",
                       subject="Sag om 010190-1234", from_address="p@gw.test", hostname="gw.test")
    msg = parse(raw)
    assert "Sag om 010190-xxxx" in msg["Subject"] and "Sag om 010190-xxxx" in msg.get_content()
    assert b"010190-1234" not in raw and "010190-1234" not in msg.get_content()


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError):
        build_notice(kind="bounce", envelope=ENVELOPE, decisions=[], quarantine_id=None, subject=None,
                     from_address="p@gw.test", hostname="gw.test")


def test_held_after_max_age_says_delivery_did_not_succeed_in_time() -> None:
    expired = Decision("borger@mail.test", Level.CONFIDENTIAL, Action.QUARANTINE, None, "max_age",
                       (Step(None, False, "not delivered within max_age: 421 try later"),))
    body = parse(build_notice(kind="quarantine", envelope=ENVELOPE, decisions=[expired], quarantine_id="Q7",
                              subject=None, from_address="p@gw.test", hostname="gw.test")).get_content()
    assert "inden for tidsfristen" in body and "in time" in body and "421 try later" in body
