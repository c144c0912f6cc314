"""Which addresses are looked up at all, and how certificate addresses compare."""

from __future__ import annotations

import pytest

from certdir.directory import address_problem_text
from certdir.localstore import normalize_address
from certdir.validation import same_address


@pytest.mark.parametrize("address", ["person@borger.test", "a.b+tag@sub.kommune.test",
                                     "*@kommune.test", "x)(y@kommune.test", "æble@kommune.test"])
def test_plausible_addresses_are_accepted(address: str) -> None:
    assert address_problem_text(address) is None


@pytest.mark.parametrize(("address", "why"), [
    ("", "empty"),
    ("no-at-sign", "local@domain"),
    ("@kommune.test", "local@domain"),
    ("a\x00b@kommune.test", "control character"),
    ("a@b\r\nRCPT TO:<x>", "control character"),
    ("person@borger.test)(mail=*", "bad domain"),
    ("x@" + "a" * 300, "too long"),
    ("x@" + "æ" * 70 + ".dk", "bad domain"),  # an IDNA label over 63 octets
])
def test_unusable_addresses_have_a_reason(address: str, why: str) -> None:
    problem = address_problem_text(address)
    assert problem is not None and why in problem


def test_domain_compares_without_case_local_part_exactly() -> None:
    assert same_address("Person@Borger.TEST", "Person@borger.test")
    assert not same_address("person@borger.test", "Person@borger.test")
    assert not same_address("person@borger.test", "person@borger.test.evil")


def test_normalized_address_lowercases_the_domain_only() -> None:
    assert normalize_address("Mixed.Case@Kommune.TEST.") == "Mixed.Case@kommune.test"
