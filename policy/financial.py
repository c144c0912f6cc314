"""Financial identifiers: IBAN (mod-97), payment cards (Luhn), Danish reg.+konto in context.

Each finding is masked before it leaves this module: an IBAN keeps its country
and check digits, a card its last four digits, an account its reg. number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policy.prefilter import capitals, digit_runs, fold, latin1

# ISO 13616 lengths for the countries a Danish organisation meets most; others
# are accepted within the standard's 15-34 range when mod-97 holds.
_IBAN_LENGTHS = {"DK": 18, "FO": 18, "GL": 18, "NO": 15, "SE": 24, "FI": 18, "DE": 22,
                 "GB": 22, "NL": 18, "FR": 27, "ES": 24, "IT": 27, "PL": 28, "BE": 16,
                 "CH": 21, "AT": 20, "IE": 22, "IS": 26, "LT": 20, "LV": 21, "EE": 20}
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
# Candidates are searched for a literal prefix the regex engine finds in C:
# "AA00" in the text's capitals (prefilter.capitals) where an IBAN may start;
# for cards r"[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{1,7}" at the start
# of a run of digits (prefilter.digit_runs, where "-" is a space or a "-").
_IBAN_START = re.compile(rb"AA00")
_RUN_CARD = re.compile(rb"S000(?:-S|0)000(?:-S|0)000(?:-S|0)0{0,6}")
# where a reg.+konto pattern can start, found in the folded text (prefilter.fold)
# by the lexicon's automaton in its pass (classify), or else with str.find: a
# regex alternation would be tried at every r, s, k and a of the text
ACCOUNT_WORDS = ("reg", "sort", "konto", "account")
_ACCOUNT_SPAN = 200  # characters a reg.+konto match may take
# "reg.nr. 1234 kontonr. 0012345678", "reg. 1234 konto 12345678", "1234-0012345678"
# after "konto"/"account": the context word is required, a bare pair of digit
# groups is too often something else.
_REG_KONTO = re.compile(
    r"(?:reg(?:istrerings)?\.?\s*(?:nr|nummer)?\.?|registration\s+(?:no|number)\.?|sort\s+code)"
    r"\s*:?\s*([0-9]{4})[\s,./:;-]{1,4}(?:(?:konto|kontonr|kontonummer|account)(?:\s*(?:nr|no|nummer))?\.?\s*:?\s*)?"
    r"([0-9]{6,10})(?![0-9])"
    r"|(?:konto|kontonr|kontonummer|bankkonto|account)\.?\s*(?:nr|no|nummer)?\.?\s*:?\s*"
    r"([0-9]{4})[ -]([0-9]{6,10})(?![0-9])"
)


@dataclass(frozen=True)
class FinancialHit:
    kind: str  # "iban", "card", "bank_account"
    masked: str
    start: int
    end: int = -1  # where the number ends in the text (IBAN, card); -1: not recorded


def iban_valid(candidate: str) -> bool:
    iban = candidate.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    expected = _IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_brand_prefix(digits: str) -> bool:
    # Visa 4, Mastercard 51-55/2221-2720, Amex 34/37, Dankort 5019, Diners 36/38,
    # Discover/JCB 6: anything else with a valid Luhn is more often an ID.
    if digits[0] == "4" or digits[:4] == "5019" or digits[:2] in ("34", "36", "37", "38"):
        return True
    if "51" <= digits[:2] <= "55" or "2221" <= digits[:4] <= "2720":
        return True
    return digits[0] == "6"


def find_ibans(text: str, letters: bytes | None = None) -> list[FinancialHit]:
    """IBANs with a valid mod-97; `letters` is `prefilter.capitals(latin1(text))` if known."""
    hits: list[FinancialHit] = []
    data = capitals(latin1(text)) if letters is None else letters
    search = _IBAN_START.search
    position = 0
    while (start := search(data, position)) is not None:
        match = _IBAN.match(text, start.start())
        if match is None:
            position = start.start() + 1
            continue
        position = match.end()
        raw = match.group()
        if match.start() and text[match.start() - 1].isalnum():
            continue
        if iban_valid(raw):
            compact = raw.replace(" ", "")
            hits.append(FinancialHit("iban", f"{compact[:4]}xxxx{'x' * (len(compact) - 8)}",
                                     match.start(), match.end()))
    return hits


def find_cards(text: str, runs: bytes | None = None) -> list[FinancialHit]:
    """Card numbers with Luhn and a card prefix; `runs` is `prefilter.digit_runs` if known."""
    hits: list[FinancialHit] = []
    size = len(text)
    data = digit_runs(latin1(text)) if runs is None else runs
    for match in _RUN_CARD.finditer(data):
        start, end = match.span()
        digits = text[start:end].replace(" ", "").replace("-", "")
        if (start and text[start - 1].isdigit()) or (end < size and text[end].isdigit()):
            continue
        if 13 <= len(digits) <= 19 and _card_brand_prefix(digits) and luhn_valid(digits):
            hits.append(FinancialHit("card", f"xxxx-xxxx-xxxx-{digits[-4:]}", start, end))
    return hits


def find_bank_accounts(text: str, words: list[int] | None = None, runs: bytes | None = None,
                       ) -> list[FinancialHit]:
    """Reg.+konto numbers. `words` are the positions in `prefilter.fold(text)` where
    an ACCOUNT_WORDS word starts, `runs` is `prefilter.digit_runs`, when the caller
    has them."""
    hits: list[FinancialHit] = []
    position = 0
    runs = digit_runs(latin1(text)) if runs is None else runs
    if words is None:
        folded = fold(text)
        words = []
        for word in ACCOUNT_WORDS:
            index = folded.find(word)
            while index != -1:
                words.append(index)
                index = folded.find(word, index + len(word))
    for start in sorted(index - 1 for index in words):  # fold() puts a space before the text
        if start < position or runs.find(b"S000", start, start + _ACCOUNT_SPAN) == -1:
            continue  # the reg. number is four digits after the word
        match = _REG_KONTO.match(text[start:start + _ACCOUNT_SPAN].lower())
        if match is None:
            continue
        position = start + match.end()
        reg = match.group(1) or match.group(3)
        hits.append(FinancialHit("bank_account", f"reg. {reg} konto xxxxxxxxxx", start))
    return hits


def mask_financial(text: str) -> str:
    """`text` with every IBAN and card number the detectors find replaced by its masked form.

    For text the gateway keeps (a subject in the audit log): the same patterns and
    checks as the detectors, so what counts as an IBAN or a card is decided once.
    """
    hits = sorted((h for h in find_ibans(text) + find_cards(text) if h.end > h.start), key=lambda h: h.start)
    out: list[str] = []
    position = 0
    for hit in hits:
        if hit.start < position:
            continue  # overlapping findings: the first one already covers it
        out.append(text[position:hit.start])
        out.append(hit.masked)
        position = hit.end
    out.append(text[position:])
    return "".join(out)
