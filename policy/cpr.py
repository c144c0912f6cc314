"""Danish CPR numbers (DDMMYY-SSSS): found by date, confidence from format and context.

The date is checked with the century rule of the 7th digit (CPR-kontoret,
"Personnummeret i CPR-systemet"). Modulus 11 only raises confidence: since
2007 numbers that fail it are issued and valid. Evidence is always masked to
the birth date, "010190-xxxx", never the serial.
"""

from __future__ import annotations

import datetime
import functools
import re
from dataclasses import dataclass

from policy.prefilter import digit_runs, latin1
from policy.settings import CprSettings

# A candidate is six digits, one optional separator ("-", U+2010, U+2011, U+2013
# or a space) and four digits, at the start of a run of digits and not followed
# by another digit. It is searched in the text's digit runs (prefilter.digit_runs),
# whose literal prefix the regex engine finds in C; the separator and the other
# boundaries (a '+' or another digit group glued on) are checked in the text.
_RUN_CANDIDATE = re.compile(rb"S00000(?:[-x]S|0)000(?!0)")
_SEPARATORS = "-\u2010\u2011\u2013 "
_GLUE = "-\u2010\u2011\u2013/.,+"


def century(yy: int, seventh: int) -> int | None:
    """The full birth year from the two-digit year and the 7th digit of the number."""
    if seventh <= 3:
        return 1900 + yy
    if seventh in (4, 9):
        return 2000 + yy if yy <= 36 else 1900 + yy
    if 5 <= seventh <= 8:
        return 2000 + yy if yy <= 57 else 1800 + yy
    return None


def birth_date(digits: str) -> datetime.date | None:
    """The date a 10-digit CPR number encodes, or None when it is not a valid date."""
    if len(digits) != 10 or not digits.isdigit():
        return None
    day, month, yy, seventh = int(digits[0:2]), int(digits[2:4]), int(digits[4:6]), int(digits[6])
    year = century(yy, seventh)
    if year is None:
        return None
    try:
        return datetime.date(year, month, day)
    except ValueError:
        return None


def modulus11(digits: str) -> bool:
    d = digits.encode("ascii")  # ASCII codes: each digit is its value + 48, weights sum to 37
    total = (4 * d[0] + 3 * d[1] + 2 * d[2] + 7 * d[3] + 6 * d[4] + 5 * d[5] + 4 * d[6]
             + 3 * d[7] + 2 * d[8] + d[9]) - 48 * 37
    return total % 11 == 0


def mask(digits: str) -> str:
    return f"{digits[:6]}-xxxx"


@dataclass(frozen=True)
class CprHit:
    masked: str
    score: int
    start: int
    modulus11: bool
    context: bool


@functools.cache
def _word_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    # at a word start, so "konto" does not fire inside "kontorstol"; the end is
    # open so "cpr" also covers "cpr-nr." and "faktura" covers "fakturanummer"
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alternatives})")


def _has_word(window: str, words: tuple[str, ...]) -> bool:
    return bool(words) and _word_pattern(words).search(window) is not None


@functools.cache
def _label_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    # The word must be the number's label: "Tlf. 010190-1234", "Fakturanr 0101901234",
    # "Faktura nr.: ...", "Order #...". Only the rest of the word ("nr", "nummer"),
    # an optional "nr."/"no." and punctuation or space may stand between them. A
    # negative word further back ("Sagsnr. 24-113. Borger: Jens Hansen, 010190-1234")
    # labels something else, and dropping the CPR number there would be a miss.
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alternatives})[^\W\d_]*\.?"
                      rf"(?:\s*(?:nr|no|nummer|number|num|id)\b\.?)?[^\w,;]*\Z")


def _labelled_by(window: str, words: tuple[str, ...]) -> bool:
    return bool(words) and _label_pattern(words).search(window) is not None


def find_cprs(text: str, settings: CprSettings, runs: bytes | None = None) -> list[CprHit]:
    """Every CPR-looking number in `text` whose score reaches the threshold.

    `runs` is `prefilter.digit_runs(latin1(text))` when the caller has it already.
    """
    hits: list[CprHit] = []
    size = len(text)
    for match in _RUN_CANDIDATE.finditer(digit_runs(latin1(text)) if runs is None else runs):
        start, end = match.span()
        if end - start == 11 and text[start + 6] not in _SEPARATORS:
            # "010190/1234" ("x" also stands for the dashes beyond latin-1): no
            # candidate; the four digits after it are a run too short to start
            # one, so nothing is skipped
            continue
        before = text[start - 1] if start else ""
        after = text[end] if end < size else ""
        if before.isdigit() or after.isdigit():
            continue  # part of a longer digit run: account, EAN, tracking number
        if before in _GLUE and start >= 2 and text[start - 2].isdigit():
            continue  # "12-0101901234", "45+..." : a number written in groups
        if after in _GLUE and end + 1 < size and text[end + 1].isdigit():
            continue  # "0101901234-5", a date-time or a range
        if before == "+":
            continue  # "+4520304050": international phone number
        separated = end - start == 11
        digits = text[start:start + 6] + text[end - 4:end]
        if birth_date(digits) is None:
            continue
        # glued to letters ("srv-0101901234", "A0101901234b"): an identifier
        identifier = before.isalpha() or after.isalpha() or (
            before in "-_/" and start >= 2 and text[start - 2].isalnum())
        mod11 = modulus11(digits)
        window = text[max(0, start - settings.context_window):start].lower()
        context = _has_word(window, settings.context_words)
        score = 1 + int(separated) + int(mod11)
        if context:
            score += 2
        elif identifier or _labelled_by(window, settings.negative_words):
            score -= 3
        if score >= settings.threshold:
            hits.append(CprHit(mask(digits), score, start, mod11, context))
    return hits
