"""Small values of the audit store: masking, canonical hashing, CLI times."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.audit import AuditError, canonical, event_hash, mask_identifiers, parse_time


@pytest.mark.parametrize(("text", "masked"), [
    ("CPR 010190-1234 og 0202801234", "CPR 010190-xxxx og 020280-xxxx"),
    ("010190-xxxx", "010190-xxxx"),
    ("konto 12345678901", "konto 12345678901"),  # 11 digits: not a CPR number
])
def test_cpr_numbers_are_masked(text: str, masked: str) -> None:
    assert mask_identifiers(text) == masked


def test_hash_depends_on_position_content_and_predecessor() -> None:
    body = {"kind": "message.accepted", "subject": "M1", "at": 1.5, "data": {"b": 1, "a": "æ"}}
    reordered = {"data": {"a": "æ", "b": 1}, "at": 1.5, "subject": "M1", "kind": "message.accepted"}
    assert canonical(body) == canonical(reordered)
    base = event_hash(1, "0" * 64, body)
    assert base == event_hash(1, "0" * 64, reordered)
    assert base != event_hash(2, "0" * 64, body)
    assert base != event_hash(1, "1" * 64, body)
    assert base != event_hash(1, "0" * 64, {**body, "at": 1.6})


def test_cli_times() -> None:
    day = parse_time("2026-11-01")
    assert parse_time("2026-11-01", end=True) - day in (23 * 3600, 24 * 3600, 25 * 3600)  # DST days
    assert dt.datetime.fromtimestamp(day).astimezone().hour == 0
    assert parse_time("2026-11-01T08:30:00+00:00") == dt.datetime(2026, 11, 1, 8, 30, tzinfo=dt.UTC).timestamp()
    assert parse_time("3d") < parse_time("1h")
    with pytest.raises(AuditError, match="not a date"):
        parse_time("yesterday-ish")
