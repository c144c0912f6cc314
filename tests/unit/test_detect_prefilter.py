"""The numeric detectors search digit runs for a literal prefix; they find what the
regular expression tried at every position of the text finds (the old scan with
the regex over the text missed a number when a match inside a longer run hid it)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.cpr import _GLUE, birth_date, find_cprs, mask, modulus11
from policy.financial import (
    _card_brand_prefix,
    find_bank_accounts,
    find_cards,
    find_ibans,
    iban_valid,
    luhn_valid,
)
from policy.prefilter import digit_runs, latin1
from policy.settings import CprSettings

SETTINGS = CprSettings()
_OLD_CPR = re.compile(r"[0-9]{6}[-\u2010\u2011\u2013 ]?[0-9]{4}")
_OLD_CARD = re.compile(r"[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{1,7}")
_OLD_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")


def _reference_cprs(text: str) -> list[str]:
    """The candidates of the regex tried at every position, through the same checks."""
    found = []
    for start in range(len(text)):
        match = _OLD_CPR.match(text, start)
        if match is None:
            continue
        end = match.end()
        before = text[start - 1] if start else ""
        after = text[end] if end < len(text) else ""
        if before.isdigit() or after.isdigit() or before == "+":
            continue
        if before in _GLUE and start >= 2 and text[start - 2].isdigit():
            continue
        if after in _GLUE and end + 1 < len(text) and text[end + 1].isdigit():
            continue
        digits = text[start:start + 6] + text[end - 4:end]
        identifier = before.isalpha() or after.isalpha() or (
            before in "-_/" and start >= 2 and text[start - 2].isalnum())
        if birth_date(digits) is not None and 1 + (end - start == 11) + modulus11(digits) \
                - 3 * identifier >= 1:
            found.append(mask(digits))
    return found


_ALPHABET = st.sampled_from(list("0123456789") * 4 + list(" -\u2010\u2013/.\nxA?DK+"))
_BARE = CprSettings(context_words=(), negative_words=())


@settings(max_examples=500, deadline=None)
@given(st.text(_ALPHABET, max_size=80))
def test_cpr_scan_finds_what_the_regex_finds_at_every_position(text: str) -> None:
    assert [h.masked for h in find_cprs(text, _BARE)] == _reference_cprs(text)


@settings(max_examples=500, deadline=None)
@given(st.text(_ALPHABET, max_size=80))
def test_card_scan_finds_what_the_regex_finds_at_every_position(text: str) -> None:
    expected = []
    for start in range(len(text)):
        match = _OLD_CARD.match(text, start)
        if match is None or (start and text[start - 1].isdigit()):
            continue
        end = match.end()
        digits = re.sub(r"[ -]", "", match.group())
        if end < len(text) and text[end].isdigit():
            continue
        if 13 <= len(digits) <= 19 and _card_brand_prefix(digits) and luhn_valid(digits):
            expected.append(start)
    assert [h.start for h in find_cards(text)] == expected


@settings(max_examples=300, deadline=None)
@given(st.text(_ALPHABET, max_size=60))
def test_iban_scan_matches_the_regex_over_the_text(text: str) -> None:
    expected = [m.start() for m in _OLD_IBAN.finditer(text)
                if not (m.start() and text[m.start() - 1].isalnum()) and iban_valid(m.group())]
    assert [h.start for h in find_ibans(text)] == expected


def test_a_number_after_a_longer_run_is_no_longer_hidden() -> None:
    # the old regex matched "010190 0101" inside "5010190 0101901234" and went on
    # after it, so the CPR number at the end was never a candidate
    assert [h.masked for h in find_cprs("5010190 0101901234", SETTINGS)] == ["010190-xxxx"]


def test_unicode_dashes_and_groups_are_found_through_the_runs() -> None:
    assert [h.masked for h in find_cprs("CPR 010190\u20131234", SETTINGS)] == ["010190-xxxx"]
    assert [h.masked for h in find_cprs("010190/1234", SETTINGS)] == []
    assert [h.masked for h in find_cards("1234/4111 1111 1111 1111")] == ["xxxx-xxxx-xxxx-1111"]
    assert len(find_ibans("til DK5000400440116243 straks")) == 1
    assert len(find_bank_accounts("lønkonto: 1551-3253200123")) == 1


def test_digit_runs_mark_where_each_run_starts() -> None:
    assert digit_runs(latin1("ab 1234 56789-0123")) == b"xx-S000-S0000-S000"
    assert digit_runs(latin1("12 34 56")) == b""  # no run of four digits


_WORDY = st.sampled_from(["reg.nr. ", "konto ", "lønkonto: ", "kontonr ", "account no ", "sort code ",
                          "1551", "-", " ", "3253200123", "12345678", "regards ", "Reg. ", "x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORDY, max_size=12).map("".join))
def test_account_words_from_the_lexicon_pass_find_what_str_find_finds(text: str) -> None:
    from policy.policyfile import Policy
    from policy.prefilter import fold

    _counts, words = Policy.builtin().lexicon_with_account_words.scan_folded(fold(text))
    assert find_bank_accounts(text, words) == find_bank_accounts(text)


def test_a_bank_account_in_a_message_is_found_through_the_lexicon_pass() -> None:
    from policy.classify import classify_message
    from policy.policyfile import Policy

    raw = ("From: a@k.dk\r\nTo: b@x.dk\r\nSubject: Udbetaling\r\n\r\n"
           "Beløbet går til din lønkonto: 1551-3253200123 i morgen.\r\n").encode()
    evidence = {e.detector: e for e in classify_message(raw, Policy.builtin()).evidence}
    assert evidence["financial.bank_account"].samples == ("reg. 1551 konto xxxxxxxxxx",)
