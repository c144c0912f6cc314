"""IBAN with mod-97, payment cards with Luhn, Danish reg.+konto in context."""

from __future__ import annotations

from policy.financial import find_bank_accounts, find_cards, find_ibans, iban_valid, luhn_valid


def test_valid_danish_iban_is_found_and_masked() -> None:
    hits = find_ibans("Beløbet overføres til DK50 0040 0440 1162 43.")
    assert [h.masked for h in hits] == ["DK50xxxxxxxxxxxxxx"]
    assert "1162" not in hits[0].masked


def test_iban_with_wrong_check_digits_is_ignored() -> None:
    assert not iban_valid("DK00 1234 5678 9012 34")
    assert find_ibans("DK00 1234 5678 9012 34") == []


def test_iban_compact_and_foreign() -> None:
    assert len(find_ibans("IBAN: DK5000400440116243")) == 1
    assert len(find_ibans("GB82 WEST 1234 5698 7654 32")) == 1


def test_iban_of_wrong_length_for_its_country_is_ignored() -> None:
    assert find_ibans("DK50 0040 0440 1162 4") == []


def test_card_with_luhn_and_brand_prefix() -> None:
    assert [h.masked for h in find_cards("kort 4111 1111 1111 1111 udløb")] == ["xxxx-xxxx-xxxx-1111"]
    assert len(find_cards("5500-0000-0000-0004")) == 1


def test_card_shaped_numbers_without_luhn_or_in_longer_runs_are_ignored() -> None:
    assert not luhn_valid("4111111111111112")
    assert find_cards("4111 1111 1111 1112") == []
    assert find_cards("99411111111111111119") == []
    assert find_cards("1111 1111 1111 1117") == []  # Luhn-valid, no card prefix


def test_reg_and_account_number_in_context() -> None:
    assert len(find_bank_accounts("udbetales til reg.nr. 1551 kontonr. 3253200123")) == 1
    assert len(find_bank_accounts("reg. 1551 konto 3253200123")) == 1
    assert len(find_bank_accounts("kontonummer: 1551-3253200123")) == 1
    hits = find_bank_accounts("registreringsnummer 1551, kontonummer 3253200123")
    assert [h.masked for h in hits] == ["reg. 1551 konto xxxxxxxxxx"]


def test_two_digit_groups_without_context_are_not_an_account() -> None:
    assert find_bank_accounts("mødet er i lokale 1551 kl. 3253200123") == []
