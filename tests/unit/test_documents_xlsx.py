"""XLSX: numbers as Excel shows them, cells next to their column headers."""

from __future__ import annotations

from policy.classify import classify_message
from policy.documents import integer_as_displayed, xlsx_text
from policy.model import Level
from policy.policyfile import Policy
from policy.settings import ScanLimits
from tests.corpus.build import Attachment, Case, build_message, make_xlsx

LIMITS = ScanLimits()


def test_digit_mask_formats_restore_the_leading_zero() -> None:
    assert integer_as_displayed(101901234, "0000000000") == "0101901234"
    assert integer_as_displayed(101901234, "000000-0000") == "010190-1234"
    assert integer_as_displayed(101901234, "000000\\-0000") == "010190-1234"
    assert integer_as_displayed(101901234, '000000"-"0000') == "010190-1234"


def test_other_formats_are_not_digit_masks() -> None:
    assert integer_as_displayed(101901234, "General") is None
    assert integer_as_displayed(101901234, "dd-mm-yy") is None
    assert integer_as_displayed(1234, "#,##0") is None
    assert integer_as_displayed(1234, "0.00") is None


def test_a_cpr_stored_as_a_number_is_read_with_its_cell_format() -> None:
    data = make_xlsx([["Navn", "Nummer"], ["Jens", 101901234], ["Anne", 707614285]],
                     number_formats={1: "000000-0000"})
    text = xlsx_text(data, LIMITS)
    assert "010190-1234" in text and "070761-4285" in text


def test_a_ten_digit_mask_pads_a_nine_digit_number() -> None:
    text = xlsx_text(make_xlsx([["Nummer"], [101901234]], number_formats={0: "0000000000"}), LIMITS)
    assert "0101901234" in text


def test_a_cpr_column_in_the_general_format_is_padded() -> None:
    assert "0101901234" in xlsx_text(make_xlsx([["Navn", "CPR-nr"], ["Jens", 101901234]]), LIMITS)


def test_a_nine_digit_number_elsewhere_stays_as_it_is() -> None:
    text = xlsx_text(make_xlsx([["Navn", "Antal"], ["Jens", 101901234]]), LIMITS)
    assert "101901234" in text and "0101901234" not in text


def test_cells_are_read_after_their_column_header() -> None:
    text = xlsx_text(make_xlsx([["Varenr", "Pris"], ["1012881234", 1995]]), LIMITS)
    assert "Varenr: 1012881234; Pris: 1995" in text


def test_a_message_with_cpr_numbers_typed_into_excel_is_confidential() -> None:
    sheet = make_xlsx([["Modtager", "Nummer", "Beløb"], ["Jens Hansen", 101901234, 2500]],
                      number_formats={1: "000000-0000"})
    raw = build_message(Case("x", "confidential", "Udbetalinger", "Listen vedhæftet.",
                             attachments=(Attachment("liste.xlsx", sheet),)))
    result = classify_message(raw, Policy.builtin())
    assert result.level is Level.CONFIDENTIAL
    assert [e.samples for e in result.evidence if e.detector == "cpr"] == [("010190-xxxx",)]
