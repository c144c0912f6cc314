"""CPR numbers: date with the century rule, modulus 11 only raises confidence, guards."""

from __future__ import annotations

import datetime
from dataclasses import replace

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from policy.cpr import birth_date, century, find_cprs, mask, modulus11
from policy.settings import CprSettings

SETTINGS = CprSettings()


def found(text: str, cpr: CprSettings = SETTINGS) -> list[str]:
    return [hit.masked for hit in find_cprs(text, cpr)]


def test_century_rule_of_the_seventh_digit() -> None:
    assert century(90, 0) == 1990
    assert century(90, 3) == 1990
    assert century(36, 4) == 2036 and century(37, 4) == 1937
    assert century(57, 5) == 2057 and century(58, 5) == 1858
    assert century(36, 9) == 2036 and century(37, 9) == 1937


def test_birth_date_checks_the_calendar_with_the_full_year() -> None:
    assert birth_date("2902004000") == datetime.date(2000, 2, 29)  # 7th digit 4: 2000, leap
    assert birth_date("2902001000") is None  # 7th digit 1: 1900, not a leap year
    assert birth_date("3104901234") is None
    assert birth_date("0013901234") is None


def test_modulus11_is_reported_but_not_required() -> None:
    assert modulus11("0707614285")
    assert not modulus11("0101901234")
    hits = find_cprs("CPR 070761-4285 og 010190-1234", SETTINGS)
    assert [h.modulus11 for h in hits] == [True, False]
    assert hits[0].score > hits[1].score


def test_danish_sentence_with_cpr_in_all_formats() -> None:
    text = ("Ansøger: Jens Hansen, cpr-nr. 070761-4285. Ægtefælle: 0101901234. "
            "Barn født 2005: 240405 7123.")
    assert found(text) == ["070761-xxxx", "010190-xxxx", "240405-xxxx"]


def test_evidence_is_masked_and_never_holds_the_serial() -> None:
    hits = find_cprs("CPR 070761-4285", SETTINGS)
    assert hits[0].masked == "070761-xxxx"
    assert "4285" not in repr(hits)


def test_invoice_order_and_phone_numbers_are_not_cpr() -> None:
    assert found("Fakturanr. 0101901234 forfalder 1. april") == []
    assert found("Ordrenr.: 1503851234") == []
    assert found("Ring på tlf. 2030405060") == []  # not a date anyway
    assert found("tlf 0101901234") == []
    assert found("Kontonr. 0101901234") == []


def test_negative_words_that_label_the_number_with_nr_or_punctuation() -> None:
    assert found("Faktura nr.: 0101901234") == []
    assert found("Invoice no. 0101901234") == []
    assert found("Order #0101901234") == []
    assert found("Tlf. 010190-1234") == []
    assert found("Fakturanummer: 010190-1234") == []


def test_an_unrelated_negative_word_nearby_does_not_hide_a_cpr_number() -> None:
    # the audit's misses: the negative word labels another number or nothing
    assert found("Sagsnr. 24-113. Borger: Jens Hansen, 010190-1234") == ["010190-xxxx"]
    assert found("Tlf. 20304050, Jens Hansen 010190-1234") == ["010190-xxxx"]
    assert found("Ref.: Jens Hansen (070761-4285)") == ["070761-xxxx"]
    assert found("Journalnr. 88. Patient 240405-7123") == ["240405-xxxx"]
    assert found("Faktura vedlagt. Kunde Jens Hansen 0101901234") == ["010190-xxxx"]


def test_context_word_beats_a_negative_word() -> None:
    assert found("Faktura til Jens, CPR 0101901234") == ["010190-xxxx"]


def test_long_digit_runs_and_glued_numbers_are_not_cpr() -> None:
    assert found("EAN 570101901234") == []
    assert found("0101901234567") == []
    assert found("12-0101901234") == []
    assert found("0101901234-12") == []
    assert found("+0101901234") == []
    assert found("server srv-0101901234") == []
    assert found("ID A0101901234") == []


def test_dates_are_not_cpr() -> None:
    assert found("Mødet er 01.01.1990 kl. 12:34") == []
    assert found("2026-03-01 10:15") == []
    assert found("010190") == []


def test_threshold_is_configurable() -> None:
    strict = replace(SETTINGS, threshold=3)
    assert found("0101901234", strict) == []  # bare, no mod-11, no context: score 1
    assert found("cpr 0101901234", strict) == ["010190-xxxx"]
    assert found("070761-4285", strict) == ["070761-xxxx"]  # separated + mod-11: 3


def test_disabled_context_lists_still_find_numbers() -> None:
    bare = replace(SETTINGS, context_words=(), negative_words=())
    assert found("Fakturanr. 0101901234", bare) == ["010190-xxxx"]


# -- properties ----------------------------------------------------------------

_SEVENTH_RANGES = {  # 7th digit -> (lowest, highest) birth year it can encode
    0: (1900, 1999), 1: (1900, 1999), 2: (1900, 1999), 3: (1900, 1999),
    4: (1937, 2036), 9: (1937, 2036), 5: (1858, 2057), 6: (1858, 2057),
    7: (1858, 2057), 8: (1858, 2057),
}


@st.composite
def valid_cprs(draw: st.DrawFn) -> str:
    seventh = draw(st.integers(0, 9))
    low, high = _SEVENTH_RANGES[seventh]
    year = draw(st.integers(low, high))
    # the century rule maps some (7th digit, YY) pairs to another century
    assume(century(year % 100, seventh) == year)
    day = draw(st.dates(datetime.date(year, 1, 1), datetime.date(year, 12, 31)))
    serial = draw(st.integers(0, 999))
    return f"{day:%d%m%y}{seventh}{serial:03d}"


_FORMATS = ("{d}-{s}", "{d} {s}", "{d}{s}", "{d}\u2013{s}")
_SURROUNDINGS = ("{x}", "CPR: {x}", "Personnummer {x}.", "Sagen vedrører ({x}) og bilag",
                 "{x}\nNæste linje", "Name: Jane Doe, {x}, Aarhus",
                 # negative words within the context window that label something else
                 "Sagsnr. 24-113. Borger: Jens Hansen, {x}", "Tlf. 20304050, Jens Hansen {x}",
                 "Ref.: Jens Hansen ({x})", "Journalnr. 88. Patient {x}",
                 "Faktura 2026-117 til Jens Hansen, {x}", "Order shipped. Customer Jane Doe {x}")


@settings(max_examples=300, deadline=None)
@given(valid_cprs(), st.sampled_from(_FORMATS), st.sampled_from(_SURROUNDINGS))
def test_every_valid_cpr_is_found_in_any_format(digits: str, fmt: str, around: str) -> None:
    number = fmt.format(d=digits[:6], s=digits[6:])
    assert found(around.format(x=number)) == [mask(digits)]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=10, max_size=10),
       st.sampled_from(_FORMATS), st.sampled_from(_SURROUNDINGS))
def test_digit_strings_that_are_not_valid_dates_are_not_found(digits: str, fmt: str,
                                                               around: str) -> None:
    assume(birth_date(digits) is None)
    assert found(around.format(x=fmt.format(d=digits[:6], s=digits[6:]))) == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789 -", min_size=0, max_size=60))
def test_random_digit_text_only_yields_valid_dates(text: str) -> None:
    for hit in find_cprs(text, SETTINGS):
        candidate = text[hit.start:hit.start + 11]
        digits = candidate[:6] + (candidate[7:11] if candidate[6] in "- " else candidate[6:10])
        assert birth_date(digits) is not None
