"""Parsing MTA-STS policies (RFC 8461 §3.2)."""

from __future__ import annotations

import pytest

from tlsprobe import MtaStsMode
from tlsprobe.mtasts import MtaStsError, parse_policy


def parse(text):
    return parse_policy(text, policy_id="x", fetched_at=5.0)


def test_policy_fields_are_read():
    p = parse("version: STSv1\r\nmode: enforce\r\nmx: mail.example.dk\r\nmx: *.example.dk\r\nmax_age: 604800\r\n")
    assert p.mode is MtaStsMode.ENFORCE and p.mx == ("mail.example.dk", "*.example.dk")
    assert p.max_age == 604800 and p.policy_id == "x" and p.fetched_at == 5.0


def test_unknown_keys_are_ignored_and_lf_is_accepted():
    p = parse("version: STSv1\nmode: testing\nmx: a.dk\nmax_age: 10\nextension: yes\n")
    assert p.mode is MtaStsMode.TESTING


@pytest.mark.parametrize(("text", "why"), [
    ("version: STSv2\nmode: enforce\nmx: a.dk\nmax_age: 1\n", "version"),
    ("version: STSv1\nmode: strict\nmx: a.dk\nmax_age: 1\n", "mode"),
    ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"),
    ("version: STSv1\nmode: enforce\nmx: a.dk\nmax_age: 99999999999\n", "max_age"),
    ("version: STSv1\nmode: enforce\nmx: a.dk\nmax_age: soon\n", "max_age"),
    ("<html>oops</html>\n", "key: value"),
])
def test_invalid_policy_is_refused_with_reason(text, why):
    with pytest.raises(MtaStsError, match=why):
        parse(text)


def test_mode_none_needs_no_mx():
    assert parse("version: STSv1\nmode: none\nmax_age: 1\n").mx == ()
