"""The shipped policy reads every RFC 2156 Sensitivity value as at least confidential."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.classify import classify_message
from policy.model import Level
from policy.policyfile import load_policy

SHIPPED = load_policy(Path(__file__).resolve().parents[2] / "policy.toml")


def _message(sensitivity: str) -> bytes:
    return (f"From: a@kommune.dk\r\nTo: b@example.dk\r\nSubject: Hej\r\n"
            f"Sensitivity: {sensitivity}\r\n\r\nVi ses i morgen.\r\n").encode()


@pytest.mark.parametrize("value", ["Personal", "Private", "Company-Confidential", "personal"])
def test_each_rfc2156_sensitivity_value_raises_to_confidential(value: str) -> None:
    result = classify_message(_message(value), SHIPPED)
    assert result.level is Level.CONFIDENTIAL
    assert (result.marking or "").lower() == f"sensitivity: {value.lower()}"


def test_normal_sensitivity_leaves_the_level_alone() -> None:
    assert classify_message(_message("Normal"), SHIPPED).level is Level.PUBLIC
