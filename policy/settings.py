"""Detector settings, scan limits and rules as read from the policy file.

Kept apart from `policyfile` so the detectors can be built and tested from
plain values without a file, and so the loader stays the only place that knows
about TOML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from policy.model import Level, Protection

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?B?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2,
               "G": 1024**3, "GB": 1024**3}


def parse_size(value: object) -> int:
    """ "50MB" or a whole number of bytes (same forms as the gateway config)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f'not a size: {value!r} (write e.g. "50MB")')
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


@dataclass(frozen=True)
class ScanLimits:
    """Bounds on reading one message: beyond them a part is unscannable, never skipped silently."""

    max_depth: int = 6  # nesting of message/rfc822 and archives
    max_parts: int = 1000  # MIME leaves and archive members, all levels together
    max_archive_members: int = 1000
    max_archive_total: int = 256 * 1024**2  # uncompressed bytes per archive
    # uncompressed / compressed (zip bombs reach ~1000; repetitive CSV or logs 100+)
    max_expansion_ratio: int = 250
    max_text: int = 96 * 1024**2  # characters of extracted text scanned per message
    max_document_pages: int = 2000  # PDF pages / slides / sheets rows in thousands
    # uncompressed bytes of archive members and document containers per message,
    # all archives together: per-archive limits alone let nested or repeated
    # archives multiply the work
    max_expanded: int = 512 * 1024**2
    # wall-clock bound the gateway puts on classifying one message; past it the
    # message counts as unscannable (the classifier itself is given no clock)
    max_seconds: float = 120.0


@dataclass(frozen=True)
class CprSettings:
    enabled: bool = True
    level: Level = Level.CONFIDENTIAL
    # A candidate with a valid date scores 1; +1 with a separator (the way CPR
    # numbers are written), +1 when modulus 11 holds, +2 with a context word
    # nearby, -3 when a negative word labels the number itself ("Tlf. ...",
    # "Fakturanr ..."; a negative word elsewhere in the window says nothing
    # about this number). Since
    # 2007 numbers without modulus 11 are issued, so the default threshold
    # (1) keeps every date-valid number that nothing argues against: missing
    # a CPR number is worse than a false alarm.
    threshold: int = 1
    context_window: int = 40  # characters before the number searched for words
    context_words: tuple[str, ...] = (
        "cpr", "cpr-nr", "cprnr", "cpr.nr", "cpr-nummer", "personnummer", "personnr",
        "person nr", "fødselsnummer", "cpr nummer", "personal identification",
        "civil registration", "social security",
    )
    negative_words: tuple[str, ...] = (
        "faktura", "fakturanr", "invoice", "ordre", "ordrenr", "order", "tlf", "telefon",
        "phone", "mobil", "fax", "konto", "kontonr", "account", "reference", "ref.",
        "sagsnr", "journalnr", "kundenr", "customer", "tracking", "pakke", "ean", "cvr",
        "isbn", "serienr", "serial", "varenr", "vare nr", "varenummer", "item", "artikel",
        "produktnr", "sku", "model",
    )


@dataclass(frozen=True)
class SimpleDetector:
    """A detector that is on or off and raises to one level (IBAN, cards, reg.+konto)."""

    enabled: bool = True
    level: Level = Level.CONFIDENTIAL


@dataclass(frozen=True)
class LexiconCategory:
    name: str  # policy key, e.g. "health"
    detector: str  # evidence name, e.g. "art9.health"
    level: Level
    threshold: int  # sum of the weights of the distinct terms found
    terms: Mapping[str, int] = field(repr=False)  # "diagnos*" (stem) or "dom" (whole word) -> weight
    enabled: bool = True


@dataclass(frozen=True)
class DetectorSettings:
    cpr: CprSettings = field(default_factory=CprSettings)
    iban: SimpleDetector = field(default_factory=SimpleDetector)
    card: SimpleDetector = field(default_factory=SimpleDetector)
    bank_account: SimpleDetector = field(default_factory=SimpleDetector)
    lexicon: tuple[LexiconCategory, ...] = ()


@dataclass(frozen=True)
class Rule:
    """Raises the level or narrows the protections for matching senders/recipients.

    All the conditions given must match (an address list matches when any entry
    does). A rule never lowers a level and never adds a protection.
    """

    name: str
    senders: frozenset[str] = frozenset()
    sender_domains: tuple[str, ...] = ()
    recipients: frozenset[str] = frozenset()
    recipient_domains: tuple[str, ...] = ()
    level: Level | None = None
    protections: tuple[Protection, ...] | None = None

    def matches(self, sender: str, recipient: str) -> bool:
        sender, recipient = normalise_address(sender), normalise_address(recipient)
        if self.senders and sender not in self.senders:
            return False
        if self.sender_domains and not _in_domains(sender, self.sender_domains):
            return False
        if self.recipients and recipient not in self.recipients:
            return False
        if self.recipient_domains and not _in_domains(recipient, self.recipient_domains):
            return False
        return True


def normalise_address(address: str) -> str:
    """Lower-case, without angle brackets; domains compared without a trailing dot."""
    return address.strip().strip("<>").strip().lower().rstrip(".")


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def _in_domains(address: str, domains: tuple[str, ...]) -> bool:
    # "politi.dk" covers "politi.dk" and every subdomain ("nsk.politi.dk"), the way
    # an administrator thinks of an organisation's mail domains.
    domain = domain_of(address)
    return any(domain == d or domain.endswith("." + d) for d in domains)
