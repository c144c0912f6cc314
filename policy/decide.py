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
) -> Decision:
    """Walk the acceptable protections in order; the first possible one wins.

    Fail closed: for protected levels an unknown fact met before a possible
    protection defers the message rather than settling for something weaker.
    """
    level = classification.level
    steps: list[Step] = []
    unknown = False
    for protection in protections:
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
