"""Rules by sender, recipient address and domain: raise the level, narrow the protections."""

from __future__ import annotations

from dataclasses import replace

from policy.decide import decide, offline_facts
from policy.model import (
    Action,
    CertificateFacts,
    Classification,
    FactStatus,
    Level,
    Protection,
    RecipientFacts,
    TlsFacts,
    TlsGrade,
)
from policy.policyfile import Policy
from policy.settings import Rule

COURTS = Rule("courts-and-police", recipient_domains=("domstol.dk", "politi.dk"),
              level=Level.CONFIDENTIAL, protections=(Protection.SMIME,))
CITIZEN = Rule("citizen", recipients=frozenset({"borger@example.dk"}), protections=(Protection.SMIME,))
HR = Rule("hr", sender_domains=("hr.kommune.dk",), level=Level.SENSITIVE)
POLICY = replace(Policy.builtin(), rules=(COURTS, CITIZEN, HR))
PUBLIC = Classification(Level.PUBLIC)


def test_no_rule_gives_the_level_entry() -> None:
    choice = POLICY.choice_for(PUBLIC, "a@kommune.dk", "x@example.com")
    assert choice.level is Level.PUBLIC
    assert choice.protections == (Protection.TLS_OPPORTUNISTIC,)
    assert choice.rule == "level:public"


def test_recipient_domain_rule_raises_and_narrows_including_subdomains() -> None:
    choice = POLICY.choice_for(PUBLIC, "a@kommune.dk", "Anklager@NSK.Politi.dk")
    assert choice.level is Level.CONFIDENTIAL
    assert choice.protections == (Protection.SMIME,)
    assert choice.rule == "level:confidential+rule:courts-and-police"


def test_domain_rule_does_not_match_lookalike_domain() -> None:
    choice = POLICY.choice_for(PUBLIC, "a@kommune.dk", "x@fakepoliti.dk")
    assert choice.level is Level.PUBLIC


def test_recipient_address_rule_narrows_only_for_that_citizen() -> None:
    confidential = Classification(Level.CONFIDENTIAL)
    assert POLICY.choice_for(confidential, "a@k.dk", "<Borger@Example.dk>").protections == (
        Protection.SMIME,)
    assert POLICY.choice_for(confidential, "a@k.dk", "other@example.dk").protections == (
        Protection.SMIME, Protection.TLS_VERIFIED, Protection.TLS_ENFORCED)


def test_sender_rule_raises_every_recipient() -> None:
    assert POLICY.choice_for(PUBLIC, "chef@hr.kommune.dk", "x@example.com").level is Level.SENSITIVE


def test_rule_never_lowers_the_level() -> None:
    sensitive = Classification(Level.SENSITIVE)
    choice = POLICY.choice_for(sensitive, "a@k.dk", "dommer@domstol.dk")
    assert choice.level is Level.SENSITIVE


def test_narrowing_never_adds_a_protection_outside_the_level() -> None:
    wide = Rule("wide", recipient_domains=("x.dk",), protections=tuple(Protection))
    policy = replace(Policy.builtin(), rules=(wide,))
    choice = policy.choice_for(Classification(Level.SENSITIVE), "a@k.dk", "b@x.dk")
    assert choice.protections == (Protection.SMIME, Protection.TLS_VERIFIED)


def test_decision_level_is_the_raised_level() -> None:
    facts = RecipientFacts("dommer@domstol.dk",
                           CertificateFacts(FactStatus.NO, "no certificate in OCES directory"),
                           TlsFacts(FactStatus.YES, "probed", TlsGrade.VERIFIED))
    decision = decide(POLICY, PUBLIC, "a@kommune.dk", facts)
    assert decision.level is Level.CONFIDENTIAL
    # smime only: verified TLS is not enough for the courts
    assert decision.action is Action.QUARANTINE
    assert decision.rule == "level:confidential+rule:courts-and-police"


def test_offline_facts_defer_raised_mail() -> None:
    decision = decide(POLICY, PUBLIC, "a@kommune.dk", offline_facts("x@politi.dk"))
    assert decision.action is Action.DEFER and decision.level is Level.CONFIDENTIAL
