"""Validation without any server: usage, address binding, chains (PKCS#1 and PSS)."""

from __future__ import annotations

import datetime as dt

import pytest

from certdir import RejectionCode
from certdir.validation import Problem, TrustStore, address_problem, domain_problem, usage_problem
from tests.fixtures.oces_pki import OcesPki

NOW = dt.datetime.now(dt.UTC)


@pytest.mark.parametrize(("label", "code"), [
    ("person", None), ("employee3", None), ("expired", RejectionCode.EXPIRED),
    ("notyet", RejectionCode.NOT_YET_VALID), ("nokeyenc", RejectionCode.KEY_USAGE),
    ("clientauth_only", RejectionCode.EXTENDED_KEY_USAGE), ("ec", RejectionCode.UNSUPPORTED_KEY),
])
def test_usage_checks(oces_pki: OcesPki, label: str, code: RejectionCode | None) -> None:
    problem = usage_problem(oces_pki.leaf(label).cert, NOW)
    assert (problem.code if problem else None) is code


@pytest.mark.parametrize("label", ["ec", "ec_signonly"])
def test_ec_keys_are_refused_until_ecdh_is_supported(oces_pki: OcesPki, label: str) -> None:
    # gateway/cms.py encrypts to RSA only: an EC certificate, even one with
    # keyAgreement, must not be chosen.
    problem = usage_problem(oces_pki.leaf(label).cert, NOW)
    assert problem is not None and problem.code is RejectionCode.UNSUPPORTED_KEY
    assert problem.reason.startswith("EC key agreement (ECDH) is not supported for S/MIME encryption yet")


def test_expiry_is_judged_at_the_given_time(oces_pki: OcesPki) -> None:
    cert = oces_pki.leaf("person").cert
    later = cert.not_valid_after_utc + dt.timedelta(seconds=1)
    problem = usage_problem(cert, later)
    assert problem is not None and problem.code is RejectionCode.EXPIRED


def test_san_decides_before_subject_and_entry(oces_pki: OcesPki) -> None:
    cert = oces_pki.leaf("wrongmail").cert
    # The entry says wrongmail@, the certificate says someone.else@: the certificate wins.
    problem = address_problem(cert, "wrongmail@kommune.test", ["wrongmail@kommune.test"])
    assert problem is not None and "someone.else@kommune.test" in problem.reason
    assert address_problem(cert, "someone.else@KOMMUNE.test", []) is None


def test_entry_mail_counts_only_when_the_certificate_names_no_address(oces_pki: OcesPki) -> None:
    cert = oces_pki.leaf("entry_mail_only").cert
    assert address_problem(cert, "entrymail@kommune.test", ["entrymail@kommune.test"]) is None
    problem = address_problem(cert, "entrymail@kommune.test", [])
    assert problem is not None and problem.code is RejectionCode.ADDRESS_MISMATCH


def test_domain_certificate_matches_its_domain_only(oces_pki: OcesPki) -> None:
    cert = oces_pki.leaf("domain_cert").cert
    assert domain_problem(cert, "Myndighed.TEST") is None
    assert domain_problem(cert, "kommune.test") is not None


def test_chain_through_pss_signed_issuing_ca(oces_pki: OcesPki) -> None:
    trust = TrustStore([oces_pki.root.cert], [oces_pki.oces3_ca.cert])
    chain = trust.chain(oces_pki.leaf("employee3").cert, NOW)
    assert chain == [oces_pki.leaf("employee3").cert, oces_pki.oces3_ca.cert, oces_pki.root.cert]


def test_chain_needs_the_intermediate(oces_pki: OcesPki) -> None:
    trust = TrustStore([oces_pki.root.cert])
    result = trust.chain(oces_pki.leaf("person").cert, NOW)
    assert isinstance(result, Problem) and result.code is RejectionCode.UNTRUSTED
    assert isinstance(trust.chain(oces_pki.leaf("person").cert, NOW, [oces_pki.oces2_ca.cert]), list)


def test_other_root_is_untrusted_even_with_its_intermediate(oces_pki: OcesPki) -> None:
    trust = TrustStore([oces_pki.root.cert], [oces_pki.other_ca.cert])
    result = trust.chain(oces_pki.leaf("untrusted").cert, NOW)
    assert isinstance(result, Problem) and "does not chain to a trusted root" in result.reason


def test_trust_anchor_file_splits_roots_from_intermediates(oces_pki: OcesPki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "anchors.pem"
    bundle.write_bytes(oces_pki.root.pem + oces_pki.oces2_ca.pem)
    trust = TrustStore.from_files([bundle])
    assert trust.anchors == (oces_pki.root.cert,)
    assert isinstance(trust.chain(oces_pki.leaf("person").cert, NOW), list)


def test_ldap_url_distribution_point_is_read_by_dn() -> None:
    from certdir.revocation import _dn_from_ldap_url

    url = "ldap://crtdir.certifikat.dk/cn=CRL1,cn=TRUST2408%20OCES%20CA,o=TRUST2408,c=DK?certificateRevocationList"
    assert _dn_from_ldap_url(url) == "cn=CRL1,cn=TRUST2408 OCES CA,o=TRUST2408,c=DK"
