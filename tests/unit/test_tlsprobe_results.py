"""MTA-STS MX patterns, the combination of MX grades, and the result values."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tlsprobe import DomainStatus, DomainTls, Grade, MtaStsMode, MtaStsPolicy, MxProbe, combine


def policy(mode=MtaStsMode.ENFORCE, mx=("mx.example.dk",)):
    return MtaStsPolicy(mode, tuple(mx), 86400, "id1", 0.0)


def mx(name, grade, address="127.0.0.2"):
    return MxProbe(name, address, 10, grade, f"{name}: {grade}")


def test_wildcard_pattern_matches_exactly_one_label():
    p = policy(mx=("*.example.dk",))
    assert p.permits("mx1.example.dk") and p.permits("MX1.Example.DK.")
    assert not p.permits("a.b.example.dk")
    assert not p.permits("example.dk")
    assert not p.permits("mx1.badexample.dk")


def test_exact_pattern_matches_only_that_name():
    p = policy(mx=("mail.example.dk",))
    assert p.permits("mail.example.dk") and not p.permits("mail2.example.dk")


label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)


@given(label, st.lists(label, min_size=1, max_size=3), label)
def test_wildcard_never_matches_more_or_fewer_than_one_label(head, base_labels, extra):
    base = ".".join(base_labels)
    p = policy(mx=(f"*.{base}",))
    assert p.permits(f"{head}.{base}")
    assert not p.permits(base)
    assert not p.permits(f"{extra}.{head}.{base}")


def test_mx_allowed_only_narrows_under_enforce():
    def tls(p):
        return DomainTls("example.dk", DomainStatus.GRADED, Grade.VERIFIED, "", (), p, 0.0)
    assert tls(None).mx_allowed("anything.test")
    assert tls(policy(MtaStsMode.TESTING)).mx_allowed("anything.test")
    assert not tls(policy(MtaStsMode.ENFORCE)).mx_allowed("anything.test")
    assert tls(policy(MtaStsMode.ENFORCE)).mx_allowed("mx.example.dk")


def test_domain_grade_is_the_weakest_reachable_mx():
    result = combine("d.dk", (mx("a", Grade.VERIFIED), mx("b", Grade.UNVERIFIED), mx("c", None)), None, 1.0)
    assert result.status is DomainStatus.GRADED and result.grade is Grade.UNVERIFIED
    assert "unreachable (not counted): c" in result.reason


def test_no_reachable_mx_is_unknown():
    result = combine("d.dk", (mx("a", None), mx("b", None)), None, 1.0)
    assert result.status is DomainStatus.UNKNOWN and result.grade is None


def test_enforce_policy_counts_only_permitted_mx():
    probes = (mx("mx.example.dk", Grade.VERIFIED), mx("backup.other.dk", Grade.NONE))
    assert combine("d.dk", probes, None, 1.0).grade is Grade.NONE
    result = combine("d.dk", probes, policy(), 1.0)
    assert result.grade is Grade.VERIFIED and result.mta_sts_enforced


def test_under_enforce_an_mx_that_only_encrypts_takes_no_mail():
    probes = (mx("mx.example.dk", Grade.UNVERIFIED),)
    assert combine("d.dk", probes, None, 1.0).grade is Grade.UNVERIFIED
    assert combine("d.dk", probes, policy(MtaStsMode.TESTING), 1.0).grade is Grade.UNVERIFIED
    result = combine("d.dk", probes, policy(), 1.0)
    assert result.grade is Grade.NONE and result.mta_sts is not None and not result.mta_sts_enforced
    assert "requires a certificate valid for the MX name" in result.reason


def test_result_survives_a_json_round_trip():
    original = DomainTls("d.dk", DomainStatus.GRADED, Grade.UNVERIFIED, "why",
                         (mx("a", Grade.UNVERIFIED), mx("b", None)), policy(), 12.5)
    again = DomainTls.from_dict(json.loads(json.dumps(original.to_dict())))
    assert again == original
