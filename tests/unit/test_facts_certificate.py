"""certdir's answer as the policy's fact: a candidate that could not be judged is never a "no"."""

from __future__ import annotations

from certdir import LookupResult, LookupStatus, RejectionCode
from certdir.results import Rejection
from gateway.facts import certificate_facts
from policy.model import FactStatus


def test_not_found_with_a_transient_rejection_is_unknown() -> None:
    result = LookupResult("a@b.test", LookupStatus.NOT_FOUND, "no usable certificate", None, (
        Rejection("ldap:oces", RejectionCode.REVOCATION_UNKNOWN, "CRL http://x: HTTP 503", transient=True),))
    assert certificate_facts(result).status is FactStatus.UNKNOWN


def test_not_found_with_only_lasting_rejections_is_no() -> None:
    result = LookupResult("a@b.test", LookupStatus.NOT_FOUND, "no usable certificate", None, (
        Rejection("ldap:oces", RejectionCode.EXPIRED, "expired on 2025-01-01"),))
    assert certificate_facts(result).status is FactStatus.NO
