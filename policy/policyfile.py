"""The policy file: per level the acceptable protections and the fallback, markings.

Validated as a whole: every problem is reported with file, line and key, and a
policy that fails validation is never half-applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.model import Classification, Fallback, Level, Protection
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


@dataclass(frozen=True)
class RuleChoice:
    """What the policy asks for one recipient of a message, before facts are known."""

    level: Level
    protections: tuple[Protection, ...]
    fallback: Fallback
    rule: str


@dataclass(frozen=True)
class Policy:
    levels: Mapping[Level, LevelPolicy]
    markings: Markings
    source: str = "<built-in>"

    def choice_for(self, classification: Classification, sender: str, recipient: str) -> RuleChoice:
        level = classification.level
        entry = self.levels[level]
        return RuleChoice(level, entry.protections, entry.fallback, f"level:{level}")


def _level(src: TomlSource, key: str, value: Any, problems: list[Problem]) -> Level | None:
    try:
        return Level(value)
    except ValueError:
        problems.append(src.problem(key, f"unknown level {value!r} (public, confidential, sensitive)"))
        return None


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
            problems.append(src.problem(f"{key}.fallback", f"deliver is only allowed for public mail"))
        unknown = set(entry) - {"protections", "fallback"}
        for name in sorted(unknown):
            problems.append(src.problem(f"{key}.{name}", "unknown key"))
        result[level] = LevelPolicy(tuple(protections), fallback)
    return result


def _markings(src: TomlSource, problems: list[Problem]) -> Markings:
    table = src.data.get("markings", {})
    if not isinstance(table, dict):
        problems.append(src.problem("markings", "must be a table"))
        return Markings()
    tags: dict[str, Level] = {}
    for tag, value in dict(table.get("subject_tags", {})).items():
        level = _level(src, f"markings.subject_tags.{tag}", value, problems)
        if level is not None:
            tags[tag.lower()] = level
    headers: dict[str, dict[str, Level]] = {}
    for header, values in dict(table.get("headers", {})).items():
        if not isinstance(values, dict):
            problems.append(src.problem(f"markings.headers.{header}", "must map header values to levels"))
            continue
        mapped: dict[str, Level] = {}
        for raw_value, value in values.items():
            level = _level(src, f"markings.headers.{header}.{raw_value}", value, problems)
            if level is not None:
                mapped[raw_value.strip().lower()] = level
        headers[header.lower()] = mapped
    return Markings(tags, headers)


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; raises PolicyError listing every problem."""
    try:
        src = TomlSource.load(path)
    except TomlFileError as exc:
        raise PolicyError(exc.problems)
    problems: list[Problem] = []
    levels = _levels(src, problems)
    markings = _markings(src, problems)
    if problems:
        raise PolicyError(problems)
    return Policy(levels, markings, str(path))
