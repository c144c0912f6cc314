"""Revocation checks against the real slapd and the PKI's HTTP server: CRL scope
(RFC 5280 6.3.3: IssuingDistributionPoint), outages of the CA's server, and the
OCSP answer cache."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certdir import CertificateDirectory, LookupResult, LookupStatus, RejectionCode
from tests.fixtures.oces_pki import PSS, Issued, OcesPki
from tests.fixtures.slapd import SlapdServer
from tests.integration.test_certdir_lookup import lookup, oces, settings


def _crl(ca: Issued, idp: x509.IssuingDistributionPoint, *, pss: bool) -> bytes:
    """A validly signed CRL with no entries, of the scope `idp` says."""
    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
           .last_update(now - dt.timedelta(hours=1)).next_update(now + dt.timedelta(days=1))
           .add_extension(x509.CRLNumber(2), critical=False).add_extension(idp, critical=True)
           .sign(ca.key, hashes.SHA256(), rsa_padding=PSS if pss else None))  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.DER)


def _idp(url: str | None, *, users: bool = False, cas: bool = False) -> x509.IssuingDistributionPoint:
    return x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)] if url else None, relative_name=None,
        only_contains_user_certs=users, only_contains_ca_certs=cas, only_some_reasons=None,
        indirect_crl=False, only_contains_attribute_certs=False)


@contextlib.contextmanager
def published(pki: OcesPki, path: str, data: bytes) -> Iterator[None]:
    publisher = pki.publisher
    with publisher.lock:
        saved = publisher.files[path]
        publisher.files[path] = data
    try:
        yield
    finally:
        with publisher.lock:
            publisher.files[path] = saved


# -- CRL scope --------------------------------------------------------------------------


def test_the_partitioned_crl_names_its_partition_and_is_believed(oces_pki: OcesPki, slapd: SlapdServer,
                                                                 tmp_path: Path) -> None:
    idp = oces_pki.oces2_crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    assert idp.full_name is not None and idp.only_contains_user_certs  # the fixture's CRL is partitioned
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "person@borger.test")
    assert result.status is LookupStatus.FOUND, result.reason
    assert result.chosen is not None and result.chosen.revocation.startswith("not revoked (CRL CN=CRL1,")


def test_a_crl_of_another_partition_at_the_distribution_point_is_not_believed(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "wrongpartition@kommune.test")
    assert result.status is LookupStatus.UNKNOWN, result.reason
    assert [r.code for r in result.rejected] == [RejectionCode.REVOCATION_UNKNOWN]
    reason = result.rejected[0].reason
    assert "CN=CRL9," in reason and "CRL is for another partition (cn=crl1," in reason
    assert reason in result.reason


def test_a_crl_of_ca_certificates_only_says_nothing_about_an_end_entity(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    # revoked-http@ is on the real CRL; this one (validly signed, no entries) is for CAs only.
    data = _crl(oces_pki.oces3_ca, _idp(oces_pki.oces3_crl_url, cas=True), pss=True)
    with published(oces_pki, "/crl/oces3.crl", data):
        result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "revoked-http@kommune.test")
    assert result.status is LookupStatus.UNKNOWN, result.reason
    assert [r.code for r in result.rejected] == [RejectionCode.REVOCATION_UNKNOWN]
    assert "CRL covers CA certificates only" in result.rejected[0].reason


def test_a_crl_of_end_entities_only_says_nothing_about_an_issuing_ca(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    # The root's CRL revokes the issuing CA of revokedca@; this one is for end entities only.
    data = _crl(oces_pki.root, _idp(oces_pki.publisher.url("/crl/root.crl"), users=True), pss=False)
    with published(oces_pki, "/crl/root.crl", data):
        result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "revokedca@kommune.test")
    assert result.status is LookupStatus.UNKNOWN, result.reason
    assert [r.code for r in result.rejected] == [RejectionCode.REVOCATION_UNKNOWN]
    reason = result.rejected[0].reason
    assert reason.startswith("issuing CA CN=TEST Revoked udstedende-CA")
    assert "CRL covers end-entity certificates only, not CAs" in reason


def test_a_crl_naming_another_url_is_not_believed(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    data = _crl(oces_pki.oces3_ca, _idp(oces_pki.publisher.url("/crl/oces3-part2.crl")), pss=True)
    with published(oces_pki, "/crl/oces3.crl", data):
        result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "revoked-http@kommune.test")
    assert result.status is LookupStatus.UNKNOWN, result.reason
    assert "another partition (http://127.0.0.1:" in result.rejected[0].reason


# -- the CA's server down ------------------------------------------------------------------


def test_issuer_fetch_outage_is_unknown_not_untrusted(oces_pki: OcesPki, slapd: SlapdServer,
                                                      tmp_path: Path) -> None:
    # The OCES3 issuing CA is only published over AIA (HTTP): with that server down
    # the chain cannot be built, which says nothing about the certificate itself.
    with oces_pki.publisher.outage():
        result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "medarbejder@kommune.test")
    assert result.status is LookupStatus.UNKNOWN, result.reason
    assert [r.code for r in result.rejected] == [RejectionCode.UNTRUSTED]
    assert "issuer not fetched" in result.rejected[0].reason and "HTTP 503" in result.reason
    after = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "medarbejder@kommune.test")
    assert after.status is LookupStatus.FOUND and not after.cached


# -- OCSP answers are cached until their nextUpdate ------------------------------------------------


def test_an_ocsp_answer_is_reused_until_its_next_update(oces_pki: OcesPki, slapd: SlapdServer,
                                                        tmp_path: Path) -> None:
    requests = oces_pki.publisher.requests

    async def go() -> tuple[list[LookupResult], int]:
        directory = CertificateDirectory(settings(oces_pki, tmp_path, oces(slapd.url)))
        try:
            before = requests.count("POST /ocsp")
            # refresh: past the lookup cache, so only the OCSP cache can spare the request
            results = [await directory.lookup("medarbejder@kommune.test", refresh=True) for _ in range(3)]
            return results, requests.count("POST /ocsp") - before
        finally:
            await directory.close()
    results, asked = asyncio.run(go())
    assert [r.status for r in results] == [LookupStatus.FOUND] * 3, [r.reason for r in results]
    assert all(not r.cached for r in results)
    assert all(r.chosen is not None and r.chosen.revocation.startswith("not revoked (OCSP http://") for r in results)
    assert asked == 1
