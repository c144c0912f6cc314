"""A rule that narrows protections to smime only means encrypted only, level or not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from policy.decide import decide
from policy.model import (
    Action,
    CertificateFacts,
    Classification,
    FactStatus,
    Fallback,
    Level,
    Protection,
    RecipientFacts,
    TlsFacts,
    TlsGrade,
)
from policy.policyfile import Policy, load_policy
from policy.settings import Rule

PUBLIC = Classification(Level.PUBLIC)
CITIZEN = "borger@example.dk"
NO_CERT_GOOD_TLS = RecipientFacts(CITIZEN, CertificateFacts(FactStatus.NO, "no certificate"),
                                  TlsFacts(FactStatus.YES, "probed", TlsGrade.VERIFIED))
CERT = RecipientFacts(CITIZEN, CertificateFacts(FactStatus.YES, "OCES certificate"),
                      TlsFacts(FactStatus.YES, "probed", TlsGrade.NONE))


def _policy(rule: Rule) -> Policy:
    return replace(Policy.builtin(), rules=(rule,))


def test_smime_only_without_a_level_raises_public_mail_and_says_so() -> None:
    policy = _policy(Rule("citizen", recipients=frozenset({CITIZEN}),
                          protections=(Protection.SMIME,)))
    choice = policy.choice_for(PUBLIC, "a@kommune.dk", CITIZEN)
    assert choice.level is Level.CONFIDENTIAL
    assert choice.protections == (Protection.SMIME,)
    assert choice.fallback is Fallback.QUARANTINE
    assert "raised from public" in choice.rule and "citizen" in choice.rule
    decision = decide(policy, PUBLIC, "a@kommune.dk", NO_CERT_GOOD_TLS)
    assert decision.action is Action.QUARANTINE and decision.protection is None
    assert decide(policy, PUBLIC, "a@kommune.dk", CERT).protection is Protection.SMIME


def test_smime_only_with_a_level_gives_the_same_outcome_without_a_note() -> None:
    policy = _policy(Rule("citizen", recipients=frozenset({CITIZEN}), level=Level.CONFIDENTIAL,
                          protections=(Protection.SMIME,)))
    choice = policy.choice_for(PUBLIC, "a@kommune.dk", CITIZEN)
    assert (choice.level, choice.protections) == (Level.CONFIDENTIAL, (Protection.SMIME,))
    assert choice.rule == "level:confidential+rule:citizen"
    assert decide(policy, PUBLIC, "a@kommune.dk", NO_CERT_GOOD_TLS).action is Action.QUARANTINE


def test_a_rule_that_keeps_opportunistic_tls_does_not_raise_public_mail() -> None:
    policy = _policy(Rule("lenient", recipients=frozenset({CITIZEN}),
                          protections=(Protection.SMIME, Protection.TLS_OPPORTUNISTIC)))
    choice = policy.choice_for(PUBLIC, "a@kommune.dk", CITIZEN)
    assert choice.level is Level.PUBLIC and choice.rule == "level:public+rule:lenient"


def test_other_recipients_are_not_raised() -> None:
    policy = _policy(Rule("citizen", recipients=frozenset({CITIZEN}),
                          protections=(Protection.SMIME,)))
    assert policy.choice_for(PUBLIC, "a@kommune.dk", "x@example.dk").level is Level.PUBLIC


def test_the_shipped_example_rule_from_a_policy_file(tmp_path: Path) -> None:
    shipped = (Path(__file__).resolve().parents[2] / "policy.toml").read_text()
    path = tmp_path / "policy.toml"
    for with_level in (True, False):
        level = 'level = "confidential"\n' if with_level else ""
        path.write_text(shipped + '\n[[rules]]\nname = "citizen-asked-for-encryption"\n'
                        f'recipients = ["{CITIZEN}"]\n{level}protections = ["smime"]\n')
        policy = load_policy(path)
        decision = decide(policy, PUBLIC, "a@kommune.dk", NO_CERT_GOOD_TLS)
        assert decision.level is Level.CONFIDENTIAL
        assert decision.action is Action.QUARANTINE, with_level
