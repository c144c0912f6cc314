"""How an MTA-STS policy binds a delivery (RFC 8461 §5): only `enforce` restricts."""

from __future__ import annotations

import pytest

from gateway.facts import DeliveryMxPolicy
from tlsprobe.results import MtaStsMode, MtaStsPolicy


def _policy(mode: MtaStsMode) -> MtaStsPolicy:
    return MtaStsPolicy(mode, ("mx1.example.dk", "*.mail.example.dk"), 86400, "id1", 1_900_000_000.0)


def test_an_enforce_policy_restricts_mx_names_and_demands_verified_tls():
    rule = DeliveryMxPolicy.of(_policy(MtaStsMode.ENFORCE), "fetched")
    assert rule.known and rule.enforce and rule.mx_allowed is not None
    assert rule.mx_allowed("mx1.example.dk") and rule.mx_allowed("a.mail.example.dk")
    assert not rule.mx_allowed("mx2.example.dk") and not rule.mx_allowed("a.b.mail.example.dk")


@pytest.mark.parametrize("mode", [MtaStsMode.TESTING, MtaStsMode.NONE])
def test_testing_and_none_policies_restrict_nothing(mode):
    rule = DeliveryMxPolicy.of(_policy(mode), "fetched")
    assert rule.known and not rule.enforce and rule.mx_allowed is None
    assert mode.value in rule.reason
