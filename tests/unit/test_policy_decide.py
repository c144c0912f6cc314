"""The decision for one recipient: first possible protection, fail closed on unknowns."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.decide import decide_choice, decide_recipient, offline_facts
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
from policy.policyfile import Policy

POLICY = Policy.builtin()
CERT_YES = CertificateFacts(FactStatus.YES, "OCES certificate found")
CERT_NO = CertificateFacts(FactStatus.NO, "no certificate in directory")
CERT_UNKNOWN = CertificateFacts(FactStatus.UNKNOWN, "LDAP timeout")
TLS_VERIFIED = TlsFacts(FactStatus.YES, "probe", TlsGrade.VERIFIED)
TLS_UNVERIFIED = TlsFacts(FactStatus.YES, "probe", TlsGrade.UNVERIFIED)
TLS_NONE = TlsFacts(FactStatus.YES, "no STARTTLS", TlsGrade.NONE)
TLS_UNKNOWN = TlsFacts(FactStatus.UNKNOWN, "DNS SERVFAIL")


def decision(level: Level, cert: CertificateFacts, tls: TlsFacts, recipient: str = "r@x.dk"):
    classification = Classification(level)
    choice = POLICY.choice_for(classification, "s@k.dk", recipient)
    return decide_choice(classification, choice, RecipientFacts(recipient, cert, tls))


def test_sensitive_with_certificate_is_smime() -> None:
    d = decision(Level.SENSITIVE, CERT_YES, TLS_NONE)
    assert (d.action, d.protection) == (Action.SEND, Protection.SMIME)


def test_sensitive_without_certificate_uses_verified_tls() -> None:
    d = decision(Level.SENSITIVE, CERT_NO, TLS_VERIFIED)
    assert (d.action, d.protection) == (Action.SEND, Protection.TLS_VERIFIED)
    assert "no certificate in directory" in d.reason


def test_sensitive_with_unverified_tls_is_quarantined() -> None:
    d = decision(Level.SENSITIVE, CERT_NO, TLS_UNVERIFIED)
    assert d.action is Action.QUARANTINE and d.protection is None


def test_confidential_accepts_enforced_tls() -> None:
    d = decision(Level.CONFIDENTIAL, CERT_NO, TLS_UNVERIFIED)
    assert d.protection is Protection.TLS_ENFORCED


def test_unknown_certificate_never_settles_for_tls() -> None:
    d = decision(Level.CONFIDENTIAL, CERT_UNKNOWN, TLS_VERIFIED)
    assert d.action is Action.DEFER
    assert "LDAP timeout" in d.reason


def test_unknown_tls_defers_protected_mail() -> None:
    assert decision(Level.SENSITIVE, CERT_NO, TLS_UNKNOWN).action is Action.DEFER


def test_public_mail_is_delivered_opportunistically() -> None:
    d = decision(Level.PUBLIC, CERT_UNKNOWN, TLS_UNKNOWN)
    assert (d.action, d.protection) == (Action.SEND, Protection.TLS_OPPORTUNISTIC)


def test_offline_facts_defer_protected_and_send_public() -> None:
    assert offline_facts("a@b.dk").certificate.status is FactStatus.UNKNOWN
    for level, action in ((Level.PUBLIC, Action.SEND), (Level.CONFIDENTIAL, Action.DEFER),
                          (Level.SENSITIVE, Action.DEFER)):
        classification = Classification(level)
        choice = POLICY.choice_for(classification, "s@k.dk", "a@b.dk")
        assert decide_choice(classification, choice, offline_facts("a@b.dk")).action is action


def test_hand_built_opportunistic_protection_is_refused_for_protected_mail() -> None:
    d = decide_recipient(Classification(Level.CONFIDENTIAL), (Protection.TLS_OPPORTUNISTIC,),
                         Fallback.DELIVER, "test", RecipientFacts("a@b.dk", CERT_NO, TLS_NONE))
    assert d.action is Action.QUARANTINE


def test_level_argument_only_raises() -> None:
    d = decide_recipient(Classification(Level.SENSITIVE), (Protection.SMIME, Protection.TLS_ENFORCED),
                         Fallback.QUARANTINE, "test", RecipientFacts("a@b.dk", CERT_NO, TLS_UNVERIFIED),
                         level=Level.PUBLIC)
    assert d.level is Level.SENSITIVE


_FACTS = st.builds(
    RecipientFacts,
    st.just("r@x.dk"),
    st.builds(CertificateFacts, st.sampled_from(FactStatus), st.just("cert")),
    st.builds(TlsFacts, st.sampled_from(FactStatus), st.just("tls"),
              st.one_of(st.none(), st.sampled_from(TlsGrade))),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(Level), st.lists(st.sampled_from(Protection), unique=True),
       st.sampled_from(Fallback), _FACTS)
def test_decision_never_returns_a_protection_outside_the_list(
        level: Level, protections: list[Protection], fallback: Fallback,
        facts: RecipientFacts) -> None:
    d = decide_recipient(Classification(level), tuple(protections), fallback, "prop", facts)
    if d.action is Action.SEND:
        assert d.protection is not None
        # the one exception: public mail whose fallback is "deliver"
        assert d.protection in protections or (
            level is Level.PUBLIC and fallback is Fallback.DELIVER
            and d.protection is Protection.TLS_OPPORTUNISTIC)
        if level.protected:
            assert d.protection is not Protection.TLS_OPPORTUNISTIC
    else:
        assert d.protection is None
    if level.protected and d.action is Action.SEND and d.protection is not Protection.SMIME:
        # a TLS protection was only chosen after every stronger one was known impossible
        before = protections[:protections.index(d.protection)]
        assert all(s.possible is False for s in d.steps if s.protection in before)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(Level), _FACTS)
def test_shipped_policy_decisions_stay_within_the_level(level: Level, facts: RecipientFacts) -> None:
    classification = Classification(level)
    choice = POLICY.choice_for(classification, "s@k.dk", facts.address)
    d = decide_choice(classification, choice, facts)
    if d.action is Action.SEND and level.protected:
        assert d.protection in POLICY.levels[level].protections
