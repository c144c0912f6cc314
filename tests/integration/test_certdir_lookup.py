"""certdir against a real slapd, a real HTTP CRL/OCSP server and the test PKI."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import ldap3
import pytest
from cryptography.hazmat.primitives import hashes

from certdir import (
    CertificateDirectory,
    DirectorySettings,
    LdapSettings,
    LookupResult,
    LookupStatus,
    RejectionCode,
    RevocationFallback,
)
from tests.fixtures.oces_pki import MANY_ADDRESS, OcesPki
from tests.fixtures.slapd import BIND_DN, BIND_PASSWORD, SlapdServer


def oces(url: str, name: str = "oces", **over: object) -> LdapSettings:
    values: dict[str, object] = {"base": "c=DK", "timeout": 3.0, **over}
    return LdapSettings(name=name, url=url, **values)  # type: ignore[arg-type]


def settings(pki: OcesPki, tmp_path: Path, *ldap: LdapSettings, **over: object) -> DirectorySettings:
    base = DirectorySettings(trust_anchors=(pki.trust_anchors,), local_store=tmp_path / "store",
                             cache_path=tmp_path / "cache.db", ldap=tuple(ldap), fetch_timeout=5.0)
    return replace(base, **over)  # type: ignore[arg-type]


def lookup_all(cfg: DirectorySettings, *addresses: str, refresh: bool = False) -> list[LookupResult]:
    async def go() -> list[LookupResult]:
        directory = CertificateDirectory(cfg)
        try:
            return [await directory.lookup(a, refresh=refresh) for a in addresses]
        finally:
            await directory.close()
    return asyncio.run(go())


def lookup(cfg: DirectorySettings, address: str, refresh: bool = False) -> LookupResult:
    return lookup_all(cfg, address, refresh=refresh)[0]


def fingerprint(pki: OcesPki, label: str) -> str:
    return pki.leaf(label).cert.fingerprint(hashes.SHA256()).hex()


# -- found -------------------------------------------------------------------------------


def test_oces2_person_certificate_is_found_in_the_directory(oces_pki: OcesPki, slapd: SlapdServer,
                                                           tmp_path: Path) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "person@borger.test")
    assert result.status is LookupStatus.FOUND, result.reason
    assert result.chosen is not None
    assert result.chosen.sha256 == fingerprint(oces_pki, "person")
    assert result.chosen.source == "ldap:oces"
    assert result.chosen.entry == oces_pki.entry_dns["person"]
    assert result.chosen.serial == format(oces_pki.leaf("person").cert.serial_number, "x")
    assert result.chosen.key == "RSA-2048"
    assert result.chosen.revocation.startswith("not revoked (CRL CN=CRL1,")  # the partitioned CRL in LDAP
    assert result.rejected == ()


def test_oces3_employee_rsa3072_with_pss_signing_ca_is_found_via_aia_and_ocsp(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    before = len(oces_pki.publisher.requests)
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "medarbejder@kommune.test")
    assert result.status is LookupStatus.FOUND, result.reason
    assert result.chosen is not None and result.chosen.key == "RSA-3072"
    assert result.chosen.sha256 == fingerprint(oces_pki, "employee3")
    asked = oces_pki.publisher.requests[before:]
    assert "POST /ocsp" in asked  # revocation was established over OCSP
    assert result.chosen.revocation.startswith("not revoked (OCSP http://127.0.0.1:")


def test_function_mailbox_entry_is_found(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "postkasse@kommune.test")
    assert result.status is LookupStatus.FOUND, result.reason
    assert result.chosen is not None and "FID" in result.chosen.entry


def test_address_from_subject_email_or_directory_entry_when_no_san(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    results = lookup_all(settings(oces_pki, tmp_path, oces(slapd.url)),
                         "subjectmail@kommune.test", "entrymail@kommune.test")
    assert [r.status for r in results] == [LookupStatus.FOUND, LookupStatus.FOUND], [r.reason for r in results]


def test_domain_part_matches_without_case(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "Mixed.Case@kommune.test")
    assert result.status is LookupStatus.FOUND, result.reason
    other_local = lookup(settings(oces_pki, tmp_path / "2", oces(slapd.url)), "mixed.case@kommune.test")
    assert other_local.status is LookupStatus.NOT_FOUND
    assert other_local.rejected[0].code is RejectionCode.ADDRESS_MISMATCH


def test_two_valid_certificates_the_one_valid_longest_is_chosen(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "two@kommune.test")
    assert result.status is LookupStatus.FOUND, result.reason
    assert result.chosen is not None and result.chosen.sha256 == fingerprint(oces_pki, "two_long")
    assert [r.code for r in result.rejected] == [RejectionCode.NOT_CHOSEN]
    assert result.rejected[0].candidate is not None
    assert result.rejected[0].candidate.sha256 == fingerprint(oces_pki, "two_short")
    assert "valid longer" in result.rejected[0].reason


# -- rejected, each with its reason -------------------------------------------------------

NEGATIVE = [
    ("expired@kommune.test", RejectionCode.EXPIRED, "expired on"),
    ("notyet@kommune.test", RejectionCode.NOT_YET_VALID, "not valid before"),
    ("revoked-ldap@kommune.test", RejectionCode.REVOKED, "(CRL CN=CRL1,CN=TEST OCES2 Primary CA"),
    ("revoked-http@kommune.test", RejectionCode.REVOKED, "(CRL http://127.0.0.1:"),
    ("revoked-ocsp@kommune.test", RejectionCode.REVOKED, "(OCSP http://127.0.0.1:"),
    ("revokedca@kommune.test", RejectionCode.REVOKED, "issuing CA CN=TEST Revoked udstedende-CA,O=Test OCES,C=DK: revoked on"),
    ("nokeyenc@kommune.test", RejectionCode.KEY_USAGE, "does not permit keyEncipherment"),
    ("wrongmail@kommune.test", RejectionCode.ADDRESS_MISMATCH, "issued for someone.else@kommune.test"),
    ("untrusted@kommune.test", RejectionCode.UNTRUSTED, "does not chain to a trusted root"),
    ("malformed@kommune.test", RejectionCode.MALFORMED, "not a certificate"),
    ("ec@kommune.test", RejectionCode.UNSUPPORTED_KEY,
     "EC key agreement (ECDH) is not supported for S/MIME encryption yet"),
    ("ec-sign@kommune.test", RejectionCode.UNSUPPORTED_KEY,
     "EC key agreement (ECDH) is not supported for S/MIME encryption yet"),
    ("clientauth@kommune.test", RejectionCode.EXTENDED_KEY_USAGE, "excludes emailProtection"),
]


@pytest.mark.parametrize(("address", "code", "text"), NEGATIVE, ids=[n[0].split("@")[0] for n in NEGATIVE])
def test_unusable_certificate_is_rejected_with_reason(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path,
                                                      address: str, code: RejectionCode, text: str) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), address)
    assert result.status is LookupStatus.NOT_FOUND, result.reason
    assert result.chosen is None
    assert [r.code for r in result.rejected] == [code], result.rejected
    assert text in result.rejected[0].reason
    assert result.rejected[0].reason in result.reason  # the one-line reason names it
    assert result.rejected[0].source == "ldap:oces"


def test_address_without_entries_is_not_found(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "nobody@kommune.test")
    assert result.status is LookupStatus.NOT_FOUND
    assert result.rejected == ()
    assert "no certificate for nobody@kommune.test" in result.reason


# -- filter injection ------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["*@kommune.test", "x)(mail=*)(x@kommune.test", "*)(|(mail=*@kommune.test"])
def test_filter_metacharacters_in_an_address_are_literal(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path,
                                                         address: str) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), address)
    assert result.status is LookupStatus.NOT_FOUND, result.reason
    assert result.rejected == ()


def test_the_same_addresses_unescaped_would_have_matched(slapd: SlapdServer) -> None:
    # Shows the injection test above can fail: without escaping, "*" matches entries.
    conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=slapd.port, get_info=ldap3.NONE), auto_bind=True,
                            receive_timeout=5)
    try:
        conn.search("c=DK", "(mail=*@borger.test)", attributes=["mail"], size_limit=5)
        assert len(conn.entries) >= 1
    finally:
        conn.unbind()


def test_nul_in_an_address_is_refused_before_any_query(oces_pki: OcesPki, tmp_path: Path, dead_ldap_url: str) -> None:
    # A dead directory: a query would have made the answer UNKNOWN.
    result = lookup(settings(oces_pki, tmp_path, oces(dead_ldap_url)), "person\x00@borger.test")
    assert result.status is LookupStatus.NOT_FOUND
    assert "control character" in result.reason


# -- directories that cannot answer ----------------------------------------------------------


def test_directory_down_is_unknown_and_not_cached(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path,
                                                   dead_ldap_url: str) -> None:
    down = lookup(settings(oces_pki, tmp_path, oces(dead_ldap_url, name="down")), "person@borger.test")
    assert down.status is LookupStatus.UNKNOWN
    assert "directory down" in down.reason
    # Same cache file, directory back: the outage was not remembered as "no certificate".
    up = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "person@borger.test")
    assert up.status is LookupStatus.FOUND and not up.cached


def test_hung_directory_times_out_as_unknown(oces_pki: OcesPki, tmp_path: Path, silent_ldap: str) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(silent_ldap, name="hung", timeout=1.0)), "person@borger.test")
    assert result.status is LookupStatus.UNKNOWN
    assert "directory hung" in result.reason


def test_too_many_entries_is_unknown_not_a_choice(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), MANY_ADDRESS)
    assert result.status is LookupStatus.UNKNOWN
    assert "size limit" in result.reason


def test_client_size_limit_applies_below_the_servers(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url, size_limit=1)), "two@kommune.test")
    assert result.status is LookupStatus.UNKNOWN
    assert "size limit 1" in result.reason


def test_directories_are_tried_in_order_and_a_later_one_can_answer(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, dead_ldap_url: str) -> None:
    cfg = settings(oces_pki, tmp_path, oces(dead_ldap_url, name="first"), oces(slapd.url, name="second"))
    result = lookup(cfg, "person@borger.test")
    assert result.status is LookupStatus.FOUND
    assert result.chosen is not None and result.chosen.source == "ldap:second"
    assert any("directory first" in e for e in result.errors)


def test_not_found_in_one_directory_and_another_down_is_unknown(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, dead_ldap_url: str) -> None:
    cfg = settings(oces_pki, tmp_path, oces(slapd.url), oces(dead_ldap_url, name="other"))
    result = lookup(cfg, "nobody@kommune.test")
    assert result.status is LookupStatus.UNKNOWN


def test_bind_with_wrong_credentials_is_unknown(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    cfg = settings(oces_pki, tmp_path, oces(slapd.url, bind_dn="cn=nobody,c=DK", bind_password="wrong"))
    result = lookup(cfg, "person@borger.test")
    assert result.status is LookupStatus.UNKNOWN
    assert "bind failed" in result.reason


def test_bind_with_the_right_credentials_reads_what_anonymous_cannot(oces_pki: OcesPki, slapd: SlapdServer,
                                                                     tmp_path: Path) -> None:
    # The directory shows o=Lukket Myndighed only to BIND_DN (slapd ACL).
    anonymous = lookup(settings(oces_pki, tmp_path / "anonymous", oces(slapd.url)), "fortrolig@lukket.test")
    assert anonymous.status is LookupStatus.NOT_FOUND and anonymous.rejected == ()
    bound = lookup(settings(oces_pki, tmp_path / "bound", oces(slapd.url, bind_dn=BIND_DN,
                                                                bind_password=BIND_PASSWORD)),
                   "fortrolig@lukket.test")
    assert bound.status is LookupStatus.FOUND, bound.reason
    assert bound.chosen is not None and bound.chosen.sha256 == fingerprint(oces_pki, "closed")
    assert bound.chosen.entry == oces_pki.entry_dns["closed"]
    wrong = lookup(settings(oces_pki, tmp_path / "wrong", oces(slapd.url, bind_dn=BIND_DN,
                                                                bind_password=BIND_PASSWORD + "x")),
                   "fortrolig@lukket.test")
    assert wrong.status is LookupStatus.UNKNOWN and "bind failed" in wrong.reason


# -- cache -------------------------------------------------------------------------------


def test_positive_and_negative_answers_are_cached(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path,
                                                  dead_ldap_url: str) -> None:
    live = settings(oces_pki, tmp_path, oces(slapd.url))
    first = lookup_all(live, "person@borger.test", "nobody@kommune.test")
    assert [r.cached for r in first] == [False, False]
    # The directory is gone; the cache answers for both.
    gone = settings(oces_pki, tmp_path, oces(dead_ldap_url))
    found, missing = lookup_all(gone, "person@borger.test", "nobody@kommune.test")
    assert found.status is LookupStatus.FOUND and found.cached
    assert found.chosen is not None and found.chosen.sha256 == fingerprint(oces_pki, "person")
    assert missing.status is LookupStatus.NOT_FOUND and missing.cached
    # refresh bypasses the cache, and the outage shows.
    assert lookup(gone, "person@borger.test", refresh=True).status is LookupStatus.UNKNOWN


def test_rejections_survive_the_cache(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path,
                                      dead_ldap_url: str) -> None:
    lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "expired@kommune.test")
    again = lookup(settings(oces_pki, tmp_path, oces(dead_ldap_url)), "expired@kommune.test")
    assert again.cached and again.status is LookupStatus.NOT_FOUND
    assert [r.code for r in again.rejected] == [RejectionCode.EXPIRED]


def test_zero_negative_ttl_caches_no_negative_answer(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path,
                                                     dead_ldap_url: str) -> None:
    lookup(settings(oces_pki, tmp_path, oces(slapd.url), negative_cache_ttl=0.0), "nobody@kommune.test")
    again = lookup(settings(oces_pki, tmp_path, oces(dead_ldap_url)), "nobody@kommune.test")
    assert again.status is LookupStatus.UNKNOWN


def test_concurrent_lookups_of_one_address_are_asked_once(oces_pki: OcesPki, slapd: SlapdServer,
                                                          tmp_path: Path) -> None:
    before = oces_pki.publisher.requests.count("POST /ocsp")

    async def go() -> list[LookupResult]:
        directory = CertificateDirectory(settings(oces_pki, tmp_path, oces(slapd.url)))
        try:
            return list(await asyncio.wait_for(asyncio.gather(
                *[directory.lookup(a) for a in ["person@borger.test", "medarbejder@kommune.test"] * 10]), 60))
        finally:
            await directory.close()
    results = asyncio.run(go())
    assert all(r.status is LookupStatus.FOUND for r in results), [r.reason for r in results]
    assert len({r.chosen.sha256 for r in results if r.chosen}) == 2
    # Ten callers for medarbejder@, one lookup, so one OCSP request.
    assert oces_pki.publisher.requests.count("POST /ocsp") - before == 1


# -- revocation status that cannot be established -----------------------------------------------


def test_unreachable_crl_makes_the_certificate_unusable_by_default(oces_pki: OcesPki, tmp_path: Path) -> None:
    # The person certificate from the local store; its CRL lives in LDAP, and no
    # directory is configured to read it from.
    store = tmp_path / "store" / "address" / "person@borger.test"
    store.mkdir(parents=True)
    (store / "person.pem").write_bytes(oces_pki.leaf("person").pem)
    (tmp_path / "store" / "intermediates").mkdir()
    (tmp_path / "store" / "intermediates" / "oces2.pem").write_bytes(oces_pki.oces2_ca.pem)
    strict = lookup(settings(oces_pki, tmp_path), "person@borger.test")
    # Fail closed: not "no certificate" (which would let protected mail take TLS) but UNKNOWN.
    assert strict.status is LookupStatus.UNKNOWN, strict.reason
    assert strict.rejected[0].code is RejectionCode.REVOCATION_UNKNOWN
    assert "revocation status unknown" in strict.rejected[0].reason
    assert "could not establish whether a certificate is usable" in strict.reason
    assert strict.rejected[0].reason in strict.reason
    lenient = lookup(settings(oces_pki, tmp_path, revocation_unavailable=RevocationFallback.ACCEPT),
                     "person@borger.test")
    assert lenient.status is LookupStatus.FOUND  # also shows the strict answer was not cached
    assert lenient.chosen is not None and lenient.chosen.source == "local:address"
    assert "revocation status unknown" in lenient.reason and "accepted" in lenient.reason


def test_revocation_check_can_be_turned_off(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url), check_revocation=False),
                    "revoked-ldap@kommune.test")
    assert result.status is LookupStatus.FOUND


def test_no_trust_anchors_nothing_is_trusted(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    result = lookup(settings(oces_pki, tmp_path, oces(slapd.url), trust_anchors=()), "person@borger.test")
    assert result.status is LookupStatus.NOT_FOUND
    assert "no trust anchors" in result.rejected[0].reason


def test_a_dropped_idle_connection_is_replaced_transparently(slapd: SlapdServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from certdir.ldapsource import LdapSource

    async def go() -> tuple[int, int, int]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            source = LdapSource(oces(slapd.url), pool)
            try:
                first = await source.find("person@borger.test")
                assert len(source._idle) == 1  # kept for the next lookup
                source._idle[0].socket.close()  # as a server dropping an idle client does
                second = await source.find("person@borger.test")
                return len(first), len(second), len(source._idle)
            finally:
                source.close()
    assert asyncio.run(go()) == (1, 1, 1)


# -- TLS to the directory ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_tls_to_the_directory_with_its_ca(oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, mode: str) -> None:
    url = slapd.ldaps_url if mode == "ldaps" else slapd.url
    source = oces(url, starttls=mode == "starttls", tls_ca_file=str(slapd.tls_ca_file))
    result = lookup(settings(oces_pki, tmp_path, source), "person@borger.test")
    assert result.status is LookupStatus.FOUND, result.reason


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_tls_to_a_directory_with_an_untrusted_certificate_is_unknown(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, mode: str) -> None:
    url = slapd.ldaps_url if mode == "ldaps" else slapd.url
    # The PKI's trust anchor is not the directory's TLS CA.
    source = oces(url, starttls=mode == "starttls", tls_ca_file=str(oces_pki.trust_anchors))
    result = lookup(settings(oces_pki, tmp_path, source), "person@borger.test")
    assert result.status is LookupStatus.UNKNOWN, result.reason


def test_a_caller_giving_up_does_not_cancel_the_lookup_for_others(oces_pki: OcesPki, tmp_path: Path,
                                                                   silent_ldap: str) -> None:
    async def go() -> tuple[bool, LookupResult]:
        directory = CertificateDirectory(settings(oces_pki, tmp_path, oces(silent_ldap, name="hung", timeout=1.0)))
        try:
            patient = asyncio.ensure_future(directory.lookup("person@borger.test"))
            impatient_gave_up = False
            try:
                await asyncio.wait_for(directory.lookup("person@borger.test"), 0.1)
            except TimeoutError:
                impatient_gave_up = True
            return impatient_gave_up, await asyncio.wait_for(patient, 30)
        finally:
            await directory.close()
    gave_up, result = asyncio.run(go())
    assert gave_up
    assert result.status is LookupStatus.UNKNOWN and "directory hung" in result.reason


def test_crl_server_failure_is_a_reason_not_an_answer_and_is_not_cached(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    publisher = oces_pki.publisher
    with publisher.lock:
        saved = publisher.files.pop("/crl/oces3.crl")
    try:
        during = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "revoked-http@kommune.test")
    finally:
        with publisher.lock:
            publisher.files["/crl/oces3.crl"] = saved
    assert during.status is LookupStatus.UNKNOWN, during.reason
    assert [r.code for r in during.rejected] == [RejectionCode.REVOCATION_UNKNOWN]
    assert "HTTP 404" in during.rejected[0].reason and "HTTP 404" in during.reason
    after = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "revoked-http@kommune.test")
    assert not after.cached
    assert [r.code for r in after.rejected] == [RejectionCode.REVOKED]


@pytest.mark.parametrize(("who", "believed"), [("ocsp_delegate", True), ("ocsp_stranger", False)])
def test_ocsp_answer_counts_only_from_the_issuer_or_its_delegate(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, who: str, believed: bool) -> None:
    responder = oces_pki.publisher.ocsp_responder
    assert responder is not None
    responder.delegate = getattr(oces_pki, who)
    try:
        result = lookup(settings(oces_pki, tmp_path, oces(slapd.url)), "medarbejder@kommune.test")
    finally:
        responder.delegate = None
    assert result.status is LookupStatus.FOUND, result.reason
    assert result.chosen is not None
    if believed:
        assert result.chosen.revocation.startswith("not revoked (OCSP")
    else:  # the forged OCSP answer is ignored; the CRL decides
        assert result.chosen.revocation.startswith("not revoked (CRL http://")
