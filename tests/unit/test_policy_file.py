"""The policy file: the shipped default, and line-precise validation of every section."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.model import Fallback, Level, Protection
from policy.policyfile import Policy, PolicyError, load_policy

SHIPPED = Path(__file__).resolve().parents[2] / "policy.toml"

_LEVELS = """
[levels.public]
protections = ["tls-opportunistic"]
fallback = "deliver"

[levels.confidential]
protections = ["smime", "tls-verified", "tls-enforced"]
fallback = "quarantine"

[levels.sensitive]
protections = ["smime", "tls-verified"]
fallback = "quarantine"
"""


def write(tmp_path: Path, extra: str, levels: str = _LEVELS) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(levels + extra, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return [str(p) for p in info.value.problems]


def test_shipped_policy_is_spec_safe_default() -> None:
    policy = load_policy(SHIPPED)
    assert policy.levels[Level.PUBLIC].protections == (Protection.TLS_OPPORTUNISTIC,)
    assert policy.levels[Level.PUBLIC].fallback is Fallback.DELIVER
    assert policy.levels[Level.CONFIDENTIAL].protections == (
        Protection.SMIME, Protection.TLS_VERIFIED, Protection.TLS_ENFORCED)
    assert policy.levels[Level.CONFIDENTIAL].fallback is Fallback.QUARANTINE
    assert policy.levels[Level.SENSITIVE].protections == (Protection.SMIME, Protection.TLS_VERIFIED)
    assert policy.levels[Level.SENSITIVE].fallback is Fallback.QUARANTINE
    assert policy.unscannable.level is Level.CONFIDENTIAL
    assert policy.rules == ()
    assert policy.detectors.cpr.enabled and policy.detectors.cpr.threshold == 1
    assert policy.markings.subject_tags["[fortrolig]"] is Level.CONFIDENTIAL


def test_builtin_policy_matches_the_shipped_levels() -> None:
    assert Policy.builtin().levels == load_policy(SHIPPED).levels


def test_opportunistic_tls_for_protected_mail_is_refused_with_line(tmp_path: Path) -> None:
    levels = _LEVELS.replace('["smime", "tls-verified"]', '["smime", "tls-opportunistic"]')
    found = problems(write(tmp_path, "", levels))
    assert found == [f"{tmp_path}/policy.toml:11: levels.sensitive.protections: "
                     "tls-opportunistic is never allowed for sensitive mail"]


def test_public_unscannable_level_is_refused(tmp_path: Path) -> None:
    found = problems(write(tmp_path, '\n[unscannable]\nlevel = "public"\n'))
    assert found == [f"{tmp_path}/policy.toml:15: unscannable.level: must be confidential or sensitive"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    extra = """
[detectors.cpr]
threshold = 0
colour = "blue"

[detectors.lexicon.health]
threshold = "high"

[detectors.lexicon.newthing]
terms = { "x" = 1 }

[scan]
max_text = "lots"

[markings.subject_tags]
"[hemmelig]" = "top-secret"

[bogus]
"""
    found = problems(write(tmp_path, extra))
    keys = [line.split(": ")[1] for line in found]
    assert sorted(keys) == ["bogus", "detectors.cpr.colour", "detectors.cpr.threshold",
                            "detectors.lexicon.health.threshold", "detectors.lexicon.newthing",
                            "markings.subject_tags.[hemmelig]", "scan.max_text"]
    assert all(line.startswith(f"{tmp_path}/policy.toml:") for line in found)
    threshold = next(line for line in found if "cpr.threshold" in line)
    assert threshold.startswith(f"{tmp_path}/policy.toml:15:")


def test_detector_settings_are_read(tmp_path: Path) -> None:
    extra = """
[detectors.cpr]
threshold = 3
context_words = ["Patient-ID"]

[detectors.iban]
enabled = false

[detectors.lexicon.health]
threshold = 6
terms = { "blodprøve*" = 2 }

[detectors.lexicon.projects]
level = "confidential"
terms = { "projekt ørn" = 3 }

[scan]
max_archive_total = "10MB"
max_depth = 3

[markings.msip_labels]
"Fortrolig" = "confidential"
"""
    policy = load_policy(write(tmp_path, extra))
    assert policy.detectors.cpr.threshold == 3
    assert policy.detectors.cpr.context_words == ("patient-id",)
    assert not policy.detectors.iban.enabled
    health = next(c for c in policy.detectors.lexicon if c.name == "health")
    assert health.threshold == 6 and health.terms["blodprøve*"] == 2 and "diagnos*" in health.terms
    projects = next(c for c in policy.detectors.lexicon if c.name == "projects")
    assert projects.detector == "lexicon.projects" and projects.level is Level.CONFIDENTIAL
    assert policy.limits.max_archive_total == 10 * 1024 * 1024 and policy.limits.max_depth == 3
    assert policy.markings.msip_labels == {"fortrolig": Level.CONFIDENTIAL}


def test_rules_are_validated(tmp_path: Path) -> None:
    extra = """
[[rules]]
name = "courts"
recipient_domains = ["domstol.dk"]
protections = ["smime"]

[[rules]]
name = "courts"
recipients = ["not-an-address"]
level = "secret"

[[rules]]
name = "nothing"
level = "sensitive"

[[rules]]
name = "too-narrow"
recipient_domains = ["x.dk"]
protections = ["tls-enforced"]
"""
    found = problems(write(tmp_path, extra))
    text = "\n".join(found)
    assert "rules[1].name: duplicate rule name 'courts'" in text
    assert "rules[1].recipients: not an address: 'not-an-address'" in text
    assert "rules[1].level: unknown level 'secret'" in text
    assert "rules[2]: a rule needs senders, sender_domains, recipients or recipient_domains" in text
    assert "rules[3].protections: leaves no protection for sensitive mail" in text
    line_of_dup = next(line for line in found if "duplicate" in line)
    assert line_of_dup.startswith(f"{tmp_path}/policy.toml:20:")


def test_missing_file_and_broken_toml(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.toml") == [f"{tmp_path}/nope.toml: file not found"]
    broken = tmp_path / "broken.toml"
    broken.write_text("[levels\n", encoding="utf-8")
    assert problems(broken)[0].startswith(f"{broken}:1: not valid TOML")
