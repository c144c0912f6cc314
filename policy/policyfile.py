"""The policy file: levels, detectors, markings, rules and unscannable content.

Validated as a whole: every problem is reported with file, line and key, and a
policy that fails validation is never half-applied (a reload that fails keeps
the policy in force).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from policy.financial import ACCOUNT_WORDS
from policy.lexicon import BUILTIN_CATEGORIES, LexiconScanner, builtin_categories
from policy.model import Classification, Fallback, Level, Protection
from policy.settings import (
    CprSettings,
    DetectorSettings,
    LexiconCategory,
    Rule,
    ScanLimits,
    SimpleDetector,
    normalise_address,
    parse_size,
)
from policy.tomlsource import Problem, TomlFileError, TomlSource


class PolicyError(TomlFileError):
    """The policy file is invalid; `.problems` lists every problem found."""


@dataclass(frozen=True)
class LevelPolicy:
    protections: tuple[Protection, ...]
    fallback: Fallback


@dataclass(frozen=True)
class Markings:
    subject_tags: Mapping[str, Level] = field(default_factory=dict)  # lower-case tag -> level
    headers: Mapping[str, Mapping[str, Level]] = field(default_factory=dict)  # header -> value -> level
    # Microsoft Purview (MIP) sensitivity labels from the msip_labels header:
    # lower-case label name or label GUID -> level
    msip_labels: Mapping[str, Level] = field(default_factory=dict)


@dataclass(frozen=True)
class UnscannableSettings:
    """What content that cannot be read counts as. Never public: we cannot know."""

    level: Level = Level.CONFIDENTIAL
    attached_images: bool = True  # an attached image (a scan?) counts as unscannable


@dataclass(frozen=True)
class RuleChoice:
    """What the policy asks for one recipient of a message, before facts are known."""

    level: Level
    protections: tuple[Protection, ...]
    fallback: Fallback
    rule: str


_DEFAULT_LEVELS: Mapping[Level, LevelPolicy] = {
    Level.PUBLIC: LevelPolicy((Protection.TLS_OPPORTUNISTIC,), Fallback.DELIVER),
    Level.CONFIDENTIAL: LevelPolicy(
        (Protection.SMIME, Protection.TLS_VERIFIED, Protection.TLS_ENFORCED), Fallback.QUARANTINE
    ),
    Level.SENSITIVE: LevelPolicy((Protection.SMIME, Protection.TLS_VERIFIED), Fallback.QUARANTINE),
}


@dataclass(frozen=True)
class Policy:
    levels: Mapping[Level, LevelPolicy]
    markings: Markings
    source: str = "<built-in>"
    detectors: DetectorSettings = field(
        default_factory=lambda: DetectorSettings(lexicon=builtin_categories())
    )
    rules: tuple[Rule, ...] = ()
    unscannable: UnscannableSettings = field(default_factory=UnscannableSettings)
    limits: ScanLimits = field(default_factory=ScanLimits)

    @classmethod
    def builtin(cls) -> Policy:
        """The shipped safe default without a file (SPEC's table, default detectors)."""
        return cls(dict(_DEFAULT_LEVELS), Markings())

    @cached_property
    def lexicon(self) -> LexiconScanner:
        """Built once per policy: reloading the policy builds a new one."""
        return LexiconScanner(self.detectors.lexicon)

    @cached_property
    def lexicon_with_account_words(self) -> LexiconScanner:
        """The same lexicon, also reporting where reg.+konto words stand (text with digits)."""
        return LexiconScanner(self.detectors.lexicon, ACCOUNT_WORDS)

    def choice_for(self, classification: Classification, sender: str, recipient: str) -> RuleChoice:
        """The level and the protections for one recipient after the rules.

        Rules apply in file order; each may raise the level and narrow the list
        of protections (keep only those it names, in the level's order). The
        level's list is taken after all raises, so a rule can never bring in a
        protection the final level does not allow.

        A rule that narrows to protections the level does not allow at all
        ("smime" only, for public mail) raises the level to the first one that
        allows them: an administrator who writes "this citizen gets S/MIME
        only" means encrypted or held, never the public fallback of delivering
        with opportunistic TLS. The rule name says so.
        """
        level = classification.level
        matched = [rule for rule in self.rules if rule.matches(sender, recipient)]
        for rule in matched:
            if rule.level is not None:
                level = level.raised_to(rule.level)
        asked = level
        while True:
            entry = self.levels[level]
            protections = entry.protections
            for rule in matched:
                if rule.protections is not None:
                    protections = tuple(p for p in protections if p in rule.protections)
            higher = [lv for lv in Level if lv.rank == level.rank + 1]
            if protections or not higher:
                break
            level = higher[0]
        name = f"level:{level}" + "".join(f"+rule:{rule.name}" for rule in matched)
        if level is not asked:
            narrowing = ", ".join(r.name for r in matched if r.protections is not None)
            name += (f" (raised from {asked}: {narrowing} allows none of {asked}'s "
                     f"protections)")
        return RuleChoice(level, protections, entry.fallback, name)


def _levels(src: TomlSource, problems: list[Problem]) -> dict[Level, LevelPolicy]:
    table = src.data.get("levels")
    if not isinstance(table, dict):
        problems.append(src.problem("levels", "missing [levels] table"))
        return {}
    result: dict[Level, LevelPolicy] = {}
    for level in Level:
        key = f"levels.{level}"
        entry = table.get(level.value)
        if not isinstance(entry, dict):
            problems.append(src.problem(key, f"missing [levels.{level}] table"))
            continue
        raw = entry.get("protections")
        protections: list[Protection] = []
        if not isinstance(raw, list) or not raw:
            problems.append(src.problem(f"{key}.protections", "must be a non-empty list"))
        else:
            for item in raw:
                try:
                    protections.append(Protection(item))
                except ValueError:
                    problems.append(src.problem(
                        f"{key}.protections",
                        f"unknown protection {item!r} ({', '.join(p.value for p in Protection)})",
                    ))
        if level.protected and Protection.TLS_OPPORTUNISTIC in protections:
            # Datatilsynet: confidential and sensitive data never without ensured encryption
            problems.append(src.problem(
                f"{key}.protections", f"tls-opportunistic is never allowed for {level} mail"
            ))
        try:
            fallback = Fallback(entry.get("fallback", "quarantine"))
        except ValueError:
            problems.append(src.problem(f"{key}.fallback", "must be quarantine, block or deliver"))
            continue
        if fallback is Fallback.DELIVER and level.protected:
            problems.append(src.problem(f"{key}.fallback", "deliver is only allowed for public mail"))
        unknown = set(entry) - {"protections", "fallback"}
        for name in sorted(unknown):
            problems.append(src.problem(f"{key}.{name}", "unknown key"))
        result[level] = LevelPolicy(tuple(protections), fallback)
    return result




def _level(src: TomlSource, key: str, value: Any, problems: list[Problem]) -> Level | None:
    try:
        return Level(value)
    except ValueError:
        problems.append(src.problem(key, f"unknown level {value!r} (public, confidential, sensitive)"))
        return None


def _table(src: TomlSource, key: str, value: Any, problems: list[Problem]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(src.problem(key, "must be a table"))
        return {}
    return value


def _unknown_keys(src: TomlSource, key: str, table: Mapping[str, Any], known: set[str],
                  problems: list[Problem]) -> None:
    for name in sorted(set(table) - known):
        problems.append(src.problem(f"{key}.{name}", "unknown key"))


def _bool(src: TomlSource, key: str, value: Any, default: bool, problems: list[Problem]) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        problems.append(src.problem(key, "must be true or false"))
        return default
    return value


def _int(src: TomlSource, key: str, value: Any, default: int, problems: list[Problem],
         minimum: int = 0) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        problems.append(src.problem(key, f"must be a whole number >= {minimum}"))
        return default
    return value


def _strings(src: TomlSource, key: str, value: Any, problems: list[Problem]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append(src.problem(key, "must be a list of non-empty strings"))
        return None
    return tuple(value)


def _markings(src: TomlSource, problems: list[Problem]) -> Markings:
    table = _table(src, "markings", src.data.get("markings"), problems)
    _unknown_keys(src, "markings", table, {"subject_tags", "headers", "msip_labels"}, problems)
    tags: dict[str, Level] = {}
    for tag, value in _table(src, "markings.subject_tags", table.get("subject_tags"), problems).items():
        level = _level(src, f"markings.subject_tags.{tag}", value, problems)
        if level is not None:
            tags[tag.lower()] = level
    headers: dict[str, dict[str, Level]] = {}
    for header, values in _table(src, "markings.headers", table.get("headers"), problems).items():
        if not isinstance(values, dict):
            problems.append(src.problem(f"markings.headers.{header}", "must map header values to levels"))
            continue
        mapped: dict[str, Level] = {}
        for raw_value, value in values.items():
            level = _level(src, f"markings.headers.{header}.{raw_value}", value, problems)
            if level is not None:
                mapped[raw_value.strip().lower()] = level
        headers[header.lower()] = mapped
    labels: dict[str, Level] = {}
    for label, value in _table(src, "markings.msip_labels", table.get("msip_labels"), problems).items():
        level = _level(src, f"markings.msip_labels.{label}", value, problems)
        if level is not None:
            labels[label.strip().lower()] = level
    return Markings(tags, headers, labels)


def _unscannable(src: TomlSource, problems: list[Problem]) -> UnscannableSettings:
    table = _table(src, "unscannable", src.data.get("unscannable"), problems)
    _unknown_keys(src, "unscannable", table, {"level", "attached_images"}, problems)
    level = Level.CONFIDENTIAL
    if "level" in table:
        level = _level(src, "unscannable.level", table["level"], problems) or Level.CONFIDENTIAL
        if level is Level.PUBLIC:
            # fail closed: what we could not read may hold anything
            problems.append(src.problem("unscannable.level", "must be confidential or sensitive"))
    images = _bool(src, "unscannable.attached_images", table.get("attached_images"), True, problems)
    return UnscannableSettings(level, images)


_SIZE_LIMITS = {"max_archive_total", "max_text", "max_expanded"}


def _limits(src: TomlSource, problems: list[Problem]) -> ScanLimits:
    table = _table(src, "scan", src.data.get("scan"), problems)
    known = {f.name for f in fields(ScanLimits)}
    _unknown_keys(src, "scan", table, known, problems)
    values: dict[str, Any] = {}
    for name in sorted(known & set(table)):
        key = f"scan.{name}"
        if name == "max_seconds":
            seconds = table[name]
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                problems.append(src.problem(key, "must be a positive number of seconds"))
            else:
                values[name] = float(seconds)
            continue
        if name in _SIZE_LIMITS:
            try:
                values[name] = parse_size(table[name])
            except ValueError as exc:
                problems.append(src.problem(key, str(exc)))
                continue
        else:
            values[name] = _int(src, key, table[name], getattr(ScanLimits(), name), problems, 1)
        if values[name] < 1:
            problems.append(src.problem(key, "must be positive"))
    return ScanLimits(**values)


def _cpr(src: TomlSource, table: dict[str, Any], problems: list[Problem]) -> CprSettings:
    key = "detectors.cpr"
    _unknown_keys(src, key, table, {f.name for f in fields(CprSettings)}, problems)
    default = CprSettings()
    level = _level(src, f"{key}.level", table["level"], problems) if "level" in table else default.level
    context = _strings(src, f"{key}.context_words", table.get("context_words"), problems)
    negative = _strings(src, f"{key}.negative_words", table.get("negative_words"), problems)
    threshold = table.get("threshold", default.threshold)
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= 5:
        # 0 or less would accept numbers that a negative context word argued against
        problems.append(src.problem(f"{key}.threshold", "must be a whole number from 1 to 5"))
        threshold = default.threshold
    return CprSettings(
        enabled=_bool(src, f"{key}.enabled", table.get("enabled"), True, problems),
        level=level or default.level,
        threshold=threshold,
        context_window=_int(src, f"{key}.context_window", table.get("context_window"),
                            default.context_window, problems, 1),
        context_words=tuple(w.lower() for w in context) if context else default.context_words,
        negative_words=tuple(w.lower() for w in negative) if negative is not None
        else default.negative_words,
    )


def _simple(src: TomlSource, key: str, value: Any, problems: list[Problem]) -> SimpleDetector:
    table = _table(src, key, value, problems)
    _unknown_keys(src, key, table, {"enabled", "level"}, problems)
    level = _level(src, f"{key}.level", table["level"], problems) if "level" in table else None
    return SimpleDetector(_bool(src, f"{key}.enabled", table.get("enabled"), True, problems),
                          level or Level.CONFIDENTIAL)


def _lexicon(src: TomlSource, value: Any, problems: list[Problem]) -> tuple[LexiconCategory, ...]:
    table = _table(src, "detectors.lexicon", value, problems)
    categories = {c.name: c for c in builtin_categories()}
    for name, entry in table.items():
        key = f"detectors.lexicon.{name}"
        entry = _table(src, key, entry, problems)
        _unknown_keys(src, key, entry, {"enabled", "level", "threshold", "terms", "replace_terms"},
                      problems)
        base = categories.get(name)
        if base is None and "level" not in entry:
            problems.append(src.problem(key, f"a new category needs a level (built-in: "
                                             f"{', '.join(BUILTIN_CATEGORIES)})"))
            continue
        level = _level(src, f"{key}.level", entry["level"], problems) if "level" in entry else None
        terms: dict[str, int] = {} if base is None or entry.get("replace_terms") else dict(base.terms)
        for term, weight in _table(src, f"{key}.terms", entry.get("terms"), problems).items():
            if not term.rstrip("*").strip():
                problems.append(src.problem(f"{key}.terms", f"empty term {term!r}"))
            elif not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
                problems.append(src.problem(f"{key}.terms.{term}", "weight must be a whole number >= 0"))
            else:
                terms[term.lower()] = weight
        replace_terms = _bool(src, f"{key}.replace_terms", entry.get("replace_terms"), False, problems)
        if replace_terms and not terms:
            problems.append(src.problem(f"{key}.replace_terms", "replacing the terms needs terms"))
        categories[name] = LexiconCategory(
            name=name,
            detector=base.detector if base else f"lexicon.{name}",
            level=level or (base.level if base else Level.CONFIDENTIAL),
            threshold=_int(src, f"{key}.threshold", entry.get("threshold"),
                           base.threshold if base else 3, problems, 1),
            terms=terms,
            enabled=_bool(src, f"{key}.enabled", entry.get("enabled"), True, problems),
        )
    return tuple(categories.values())


def _detectors(src: TomlSource, problems: list[Problem]) -> DetectorSettings:
    table = _table(src, "detectors", src.data.get("detectors"), problems)
    _unknown_keys(src, "detectors", table, {"cpr", "iban", "card", "bank_account", "lexicon"}, problems)
    return DetectorSettings(
        cpr=_cpr(src, _table(src, "detectors.cpr", table.get("cpr"), problems), problems),
        iban=_simple(src, "detectors.iban", table.get("iban"), problems),
        card=_simple(src, "detectors.card", table.get("card"), problems),
        bank_account=_simple(src, "detectors.bank_account", table.get("bank_account"), problems),
        lexicon=_lexicon(src, table.get("lexicon"), problems),
    )


_RULE_KEYS = {"name", "senders", "sender_domains", "recipients", "recipient_domains", "level",
              "protections"}


def _addresses(src: TomlSource, key: str, value: Any, problems: list[Problem]) -> frozenset[str]:
    items = _strings(src, key, value, problems) or ()
    for item in items:
        if "@" not in item.strip("@") or item.count("@") != 1:
            problems.append(src.problem(key, f"not an address: {item!r} (domains go in *_domains)"))
    return frozenset(normalise_address(i) for i in items)


def _domains(src: TomlSource, key: str, value: Any, problems: list[Problem]) -> tuple[str, ...]:
    items = _strings(src, key, value, problems) or ()
    result: list[str] = []
    for item in items:
        domain = item.strip().lower().lstrip("@").lstrip("*.").rstrip(".")
        if "@" in domain or "." not in domain or " " in domain:
            problems.append(src.problem(key, f"not a domain: {item!r}"))
        result.append(domain)
    return tuple(result)


def _rules(src: TomlSource, levels: Mapping[Level, LevelPolicy], problems: list[Problem],
           ) -> tuple[Rule, ...]:
    raw = src.data.get("rules", [])
    if not isinstance(raw, list):
        problems.append(src.problem("rules", "must be an array of tables: [[rules]]"))
        return ()
    rules: list[Rule] = []
    names: set[str] = set()
    for index, entry in enumerate(raw):
        key = f"rules[{index}]"
        if not isinstance(entry, dict):
            problems.append(src.problem(key, "must be a table"))
            continue
        _unknown_keys(src, key, entry, _RULE_KEYS, problems)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(src.problem(f"{key}.name", "every rule needs a name"))
            name = f"rule-{index + 1}"
        elif name in names:
            problems.append(src.problem(f"{key}.name", f"duplicate rule name {name!r}"))
        names.add(name)
        level = _level(src, f"{key}.level", entry["level"], problems) if "level" in entry else None
        protections: tuple[Protection, ...] | None = None
        if "protections" in entry:
            items = _strings(src, f"{key}.protections", entry["protections"], problems) or ()
            parsed: list[Protection] = []
            for item in items:
                try:
                    parsed.append(Protection(item))
                except ValueError:
                    problems.append(src.problem(f"{key}.protections", f"unknown protection {item!r}"))
            if not parsed:
                problems.append(src.problem(f"{key}.protections", "must name at least one protection"))
            protections = tuple(parsed)
        rule = Rule(
            name=name,
            senders=_addresses(src, f"{key}.senders", entry.get("senders"), problems),
            sender_domains=_domains(src, f"{key}.sender_domains", entry.get("sender_domains"), problems),
            recipients=_addresses(src, f"{key}.recipients", entry.get("recipients"), problems),
            recipient_domains=_domains(src, f"{key}.recipient_domains", entry.get("recipient_domains"),
                                       problems),
            level=level,
            protections=protections,
        )
        if not (rule.senders or rule.sender_domains or rule.recipients or rule.recipient_domains):
            problems.append(src.problem(key, "a rule needs senders, sender_domains, recipients "
                                             "or recipient_domains"))
        if rule.level is None and rule.protections is None:
            problems.append(src.problem(key, "a rule needs a level or protections"))
        if rule.protections and levels:
            floor = rule.level or Level.CONFIDENTIAL
            for lv, entry_policy in levels.items():
                if lv.rank >= floor.rank and not set(entry_policy.protections) & set(rule.protections):
                    problems.append(src.problem(
                        f"{key}.protections",
                        f"leaves no protection for {lv} mail (allowed: "
                        f"{', '.join(entry_policy.protections)})"))
        rules.append(rule)
    return tuple(rules)


_TOP_LEVEL = {"levels", "markings", "detectors", "rules", "unscannable", "scan"}


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; raises PolicyError listing every problem."""
    try:
        src = TomlSource.load(path)
    except TomlFileError as exc:
        raise PolicyError(exc.problems)
    problems: list[Problem] = []
    for name in sorted(set(src.data) - _TOP_LEVEL):
        problems.append(src.problem(name, "unknown section"))
    levels = _levels(src, problems)
    markings = _markings(src, problems)
    detectors = _detectors(src, problems)
    rules = _rules(src, levels, problems)
    unscannable = _unscannable(src, problems)
    limits = _limits(src, problems)
    if problems:
        raise PolicyError(problems)
    return Policy(levels, markings, str(path), detectors, rules, unscannable, limits)


def with_rules(policy: Policy, rules: tuple[Rule, ...]) -> Policy:
    """A copy of `policy` with other rules (tests, explain experiments)."""
    return replace(policy, rules=rules)
