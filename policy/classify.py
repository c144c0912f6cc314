"""Classify a whole message: read every part, run the detectors, add the markings.

`classify_message` is what the pipeline calls for every message. It never
raises: whatever goes wrong while reading becomes an unscannable entry, and
unscannable content counts as the policy's `unscannable.level` (default
confidential), so an error can only make the protection stronger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.parser import HeaderParser
from email.policy import compat32

from policy.cpr import find_cprs
from policy.financial import find_bank_accounts, find_cards, find_ibans
from policy.markings import first_marking, marking_evidence, raised_by
from policy.mime import Reading, TextPiece, read_message
from policy.model import Classification, Evidence, Level
from policy.policyfile import Policy
from policy.prefilter import capitals, digit_runs, fold, latin1

MAX_SAMPLES = 5
MAX_WHERE = 10


@dataclass
class _Tally:
    level: Level
    count: int = 0
    samples: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    # one-way digests of the full values, only to count them; never leave the tally
    digests: set[bytes] = field(default_factory=set)

    def add(self, samples: Iterable[str], where: str, count: int, values: Iterable[str] = ()) -> None:
        self.count += count
        for value in values:
            self.digests.add(hashlib.blake2b(value.encode(), digest_size=16).digest())
        for sample in samples:
            if sample not in self.samples and len(self.samples) < MAX_SAMPLES:
                self.samples.append(sample)
        if where not in self.where and len(self.where) < MAX_WHERE:
            self.where.append(where)

    def evidence(self, detector: str) -> Evidence:
        return Evidence(detector, self.level, self.count, tuple(self.samples), tuple(self.where),
                        len(self.digests))


def _cpr_digits(text: str, start: int) -> str:
    """The ten digits of the CPR number found at `start`, whatever separates its two parts."""
    return "".join(ch for ch in text[start:start + 16] if ch.isdigit())[:10]


def _scan_pieces(pieces: list[TextPiece], policy: Policy) -> list[Evidence]:
    settings = policy.detectors
    lexicon = policy.lexicon
    tallies: dict[str, _Tally] = {}
    lexicon_counts: dict[tuple[int, str], int] = {}
    lexicon_where: dict[int, list[str]] = {}

    def tally(detector: str, level: Level) -> _Tally:
        return tallies.setdefault(detector, _Tally(level))

    numeric = settings.cpr.enabled or settings.iban.enabled or settings.card.enabled \
        or settings.bank_account.enabled
    for piece in pieces:
        data = latin1(piece.text)
        folded = fold(data)
        runs = digit_runs(data) if numeric else b""
        # the reg.+konto words ride along the lexicon's pass where digits are
        scanner = policy.lexicon_with_account_words if runs and settings.bank_account.enabled \
            else lexicon
        counts, account_words = scanner.scan_folded(folded)
        # Each numeric detector runs once over the whole piece, searching for
        # a literal prefix in C (prefilter.digit_runs): per-window slices,
        # lower-casing and regex starts at every digit made digit-dense text
        # (invoices, logs) slow. Every numeric identifier holds a run of >= 4
        # digits; without one digit_runs is empty and the detectors cannot fire.
        if runs:
            text = piece.text
            if settings.cpr.enabled:
                hits = find_cprs(text, settings.cpr, runs)
                if hits:
                    tally("cpr", settings.cpr.level).add((h.masked for h in hits), piece.where,
                                                         len(hits), (_cpr_digits(text, h.start) for h in hits))
            if settings.iban.enabled:
                ibans = find_ibans(text, capitals(data))
                if ibans:
                    tally("financial.iban", settings.iban.level).add(
                        (h.masked for h in ibans), piece.where, len(ibans))
            if settings.card.enabled:
                cards = find_cards(text, runs)
                if cards:
                    tally("financial.card", settings.card.level).add(
                        (h.masked for h in cards), piece.where, len(cards))
            if settings.bank_account.enabled:
                accounts = find_bank_accounts(text, account_words, runs)
                if accounts:
                    tally("financial.bank_account", settings.bank_account.level).add(
                        (h.masked for h in accounts), piece.where, len(accounts))
        for key, n in counts.items():
            lexicon_counts[key] = lexicon_counts.get(key, 0) + n
            places = lexicon_where.setdefault(key[0], [])
            if piece.where not in places and len(places) < MAX_WHERE:
                places.append(piece.where)
    evidence = [t.evidence(name) for name, t in tallies.items()]
    for hit in lexicon.evaluate(lexicon_counts):
        index = lexicon.categories.index(hit.category)
        # the lexicon's own words, never the text around them
        evidence.append(Evidence(hit.category.detector, hit.category.level, hit.count,
                                 hit.terms[:MAX_SAMPLES], tuple(lexicon_where.get(index, ()))))
    return evidence


def _unscannable_evidence(reasons: list[str], level: Level) -> Evidence:
    places = tuple(dict.fromkeys(r.split(": ", 1)[0] for r in reasons))[:MAX_WHERE]
    samples = tuple(r.split(": ", 1)[-1] for r in reasons)[:MAX_SAMPLES]
    return Evidence("unscannable", level, len(reasons), samples, places)


def classify_reading(reading: Reading, policy: Policy) -> Classification:
    evidence = marking_evidence(reading.message, policy.markings)
    marks = list(evidence)
    evidence.extend(_scan_pieces(reading.pieces, policy))
    if reading.unscannable:
        evidence.append(_unscannable_evidence(reading.unscannable, policy.unscannable.level))
    return Classification(
        level=raised_by(evidence),
        evidence=tuple(evidence),
        marking=first_marking(marks),
        scanned=True,
        unscannable=tuple(reading.unscannable),
    )


def classify_message(raw: bytes, policy: Policy) -> Classification:
    """The level of a message with masked evidence. Never raises.

    Memory and time are bounded by the scan limits of the policy (parts,
    nesting, archive expansion, characters of text scanned) on top of the
    message size the gateway accepts.
    """
    try:
        reading = read_message(raw, policy.limits, policy.unscannable.attached_images)
        return classify_reading(reading, policy)
    except Exception as exc:  # noqa: BLE001 - fail closed on anything the parsers throw
        return unscanned_message(raw, policy, f"message: cannot be scanned ({type(exc).__name__})")


def unscanned_message(raw: bytes, policy: Policy, reason: str) -> Classification:
    """The classification of a message whose content was not scanned: unscannable, at the
    policy's unscannable level, raised further by the sender's markings in the headers."""
    level = policy.unscannable.level
    evidence = [Evidence("unscannable", level, 1, (reason,), ("message",))]
    marks: list[Evidence] = []
    try:
        headers = HeaderParser(policy=compat32).parsestr(
            raw[:1024 * 1024].decode("ascii", "surrogateescape"), headersonly=True)
        marks = marking_evidence(headers, policy.markings)
    except Exception:  # noqa: BLE001, S110 - the markings can only raise the level further
        pass
    return Classification(
        level=raised_by(marks + evidence),
        evidence=tuple(marks + evidence),
        marking=first_marking(marks),
        scanned=False,
        unscannable=(reason,),
    )
