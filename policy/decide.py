"""The decision for one recipient: first acceptable protection that is possible.

Pure: the facts (certificate found? the domain's TLS grade?) come in as values.
"""

from __future__ import annotations

from policy.model import (
    Action,
    CertificateFacts,
    Classification,
    Decision,
    FactStatus,
    Fallback,
    Level,
    Protection,
    RecipientFacts,
    Step,
    TlsFacts,
    TlsGrade,
)
from policy.policyfile import Policy, RuleChoice

_TLS_GRADES_ALLOWED = {
    Protection.TLS_VERIFIED: (TlsGrade.VERIFIED,),
    Protection.TLS_ENFORCED: (TlsGrade.VERIFIED, TlsGrade.UNVERIFIED),
}


def _smime_step(facts: CertificateFacts) -> Step:
    if facts.status is FactStatus.YES:
        return Step(Protection.SMIME, True, f"S/MIME possible: {facts.reason}")
    if facts.status is FactStatus.NO:
        return Step(Protection.SMIME, False, f"S/MIME not possible: {facts.reason}")
    return Step(Protection.SMIME, None, f"S/MIME unknown: {facts.reason}")


def _tls_step(protection: Protection, facts: TlsFacts) -> Step:
    if facts.status is FactStatus.UNKNOWN:
        return Step(protection, None, f"{protection} unknown: {facts.reason}")
    if facts.status is FactStatus.YES and facts.grade in _TLS_GRADES_ALLOWED[protection]:
        return Step(protection, True, f"{protection} possible: grade {facts.grade}, {facts.reason}")
    grade = facts.grade or TlsGrade.NONE
    return Step(protection, False, f"{protection} not possible: grade {grade}, {facts.reason}")


def step_for(protection: Protection, facts: RecipientFacts) -> Step:
    """Whether one protection is possible for one recipient, with the reason."""
    if protection is Protection.SMIME:
        return _smime_step(facts.certificate)
    if protection is Protection.TLS_OPPORTUNISTIC:
        return Step(protection, True, "opportunistic TLS: STARTTLS when offered")
    return _tls_step(protection, facts.tls)


def decide_recipient(
    classification: Classification,
    protections: tuple[Protection, ...],
    fallback: Fallback,
    rule: str,
    facts: RecipientFacts,
    *,
    level: Level | None = None,
) -> Decision:
    """Walk the acceptable protections in order; the first possible one wins.

    Fail closed: for protected levels an unknown fact met before a possible
    protection defers the message rather than settling for something weaker.
    `level` is the level after the policy's rules for this recipient (a rule
    may raise it); without it the classification's level applies. It can only
    raise: a lower value is ignored.
    """
    level = classification.level if level is None else classification.level.raised_to(level)
    steps: list[Step] = []
    unknown = False
    for protection in protections:
        if protection is Protection.TLS_OPPORTUNISTIC and level.protected:
            # the policy file refuses this; a hand-built list must not slip it through
            steps.append(Step(protection, False, f"{protection} never allowed for {level} mail"))
            continue
        step = step_for(protection, facts)
        steps.append(step)
        if step.possible is None:
            unknown = True
            continue
        if step.possible:
            if unknown and level.protected:
                steps.append(Step(None, None, "deferred: a stronger protection could not be checked"))
                return Decision(facts.address, level, Action.DEFER, None, rule, tuple(steps))
            return Decision(facts.address, level, Action.SEND, protection, rule, tuple(steps))
    if unknown and level.protected:
        steps.append(Step(None, None, "deferred: facts unknown, will retry"))
        return Decision(facts.address, level, Action.DEFER, None, rule, tuple(steps))
    if fallback is Fallback.DELIVER and level is Level.PUBLIC:
        steps.append(Step(Protection.TLS_OPPORTUNISTIC, True, "none possible: public mail delivered"))
        return Decision(
            facts.address, level, Action.SEND, Protection.TLS_OPPORTUNISTIC, rule, tuple(steps)
        )
    action = Action.BLOCK if fallback is Fallback.BLOCK else Action.QUARANTINE
    steps.append(Step(None, False, f"no acceptable protection possible: {action}"))
    return Decision(facts.address, level, action, None, rule, tuple(steps))


def decide_choice(classification: Classification, choice: RuleChoice, facts: RecipientFacts) -> Decision:
    """The decision for one recipient from what `Policy.choice_for` asked for it."""
    return decide_recipient(classification, choice.protections, choice.fallback, choice.rule, facts,
                            level=choice.level)


def decide(policy: Policy, classification: Classification, sender: str,
           facts: RecipientFacts) -> Decision:
    """Rules, then the decision, for the recipient `facts` are about."""
    return decide_choice(classification, policy.choice_for(classification, sender, facts.address),
                         facts)


def offline_facts(recipient: str, reason: str = "offline") -> RecipientFacts:
    """Facts for a dry run without lookups: everything unknown, so protected mail defers."""
    return RecipientFacts(recipient, CertificateFacts(FactStatus.UNKNOWN, reason),
                          TlsFacts(FactStatus.UNKNOWN, reason))
