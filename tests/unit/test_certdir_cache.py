"""The SQLite lookup cache: answers with expiry; unknowns never stored."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from certdir import CandidateCert, LookupResult, LookupStatus, Rejection, RejectionCode
from certdir.cache import LookupCache
from tests.fixtures.oces_pki import OcesPki


def run(cache_path: Path, *steps):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        cache = LookupCache(cache_path)
        try:
            return [await step(cache) for step in steps]
        finally:
            await cache.close()
    return asyncio.run(go())


def test_found_round_trips_with_certificate_and_rejections(oces_pki: OcesPki, tmp_path: Path) -> None:
    chosen = CandidateCert.from_certificate(oces_pki.leaf("two_long").cert, "ldap:oces", "cn=x,c=DK")
    other = CandidateCert.from_certificate(oces_pki.leaf("two_short").cert, "ldap:oces", "cn=y,c=DK")
    result = LookupResult("two@kommune.test", LookupStatus.FOUND, "ok", chosen,
                          (Rejection("ldap:oces", RejectionCode.NOT_CHOSEN, "older", other, "cn=y,c=DK"),
                           Rejection("ldap:oces", RejectionCode.MALFORMED, "junk", None, "cn=z,c=DK")))
    _, back = run(tmp_path / "c.db", lambda c: c.put(result, 60), lambda c: c.get("two@kommune.test"))
    assert back is not None and back.cached
    assert back.chosen == chosen
    assert [(r.code, r.candidate, r.entry) for r in back.rejected] == [
        (RejectionCode.NOT_CHOSEN, other, "cn=y,c=DK"), (RejectionCode.MALFORMED, None, "cn=z,c=DK")]


def test_unknown_is_never_stored(tmp_path: Path) -> None:
    unknown = LookupResult("a@b.test", LookupStatus.UNKNOWN, "directory down")
    _, back = run(tmp_path / "c.db", lambda c: c.put(unknown, 3600), lambda c: c.get("a@b.test"))
    assert back is None


def test_expired_entries_are_misses(tmp_path: Path) -> None:
    result = LookupResult("a@b.test", LookupStatus.NOT_FOUND, "none")
    run(tmp_path / "c.db", lambda c: c.put(result, 0.05))
    deadline = time.monotonic() + 5
    back = result
    for _ in range(100):  # bounded: the entry expires after 50 ms
        (back,) = run(tmp_path / "c.db", lambda c: c.get("a@b.test"))
        if back is None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert back is None


def test_forget_domain_escapes_like_wildcards(tmp_path: Path) -> None:
    results = [LookupResult(a, LookupStatus.NOT_FOUND, "none") for a in ("x@a_b.test", "y@axb.test")]
    _, _, _, first, second = run(tmp_path / "c.db", lambda c: c.put(results[0], 60), lambda c: c.put(results[1], 60),
                                 lambda c: c.forget_domain("a_b.test"),
                                 lambda c: c.get("x@a_b.test"), lambda c: c.get("y@axb.test"))
    assert first is None and second is not None


def test_revocation_note_and_failed_sources_round_trip(oces_pki: OcesPki, tmp_path: Path) -> None:
    from dataclasses import replace

    chosen = replace(CandidateCert.from_certificate(oces_pki.leaf("employee3").cert, "ldap:oces", "cn=x,c=DK"),
                     revocation="not revoked (OCSP http://ocsp.test/)")
    result = LookupResult("medarbejder@kommune.test", LookupStatus.FOUND, "ok", chosen,
                          errors=("directory down: cannot reach the directory",))
    _, back = run(tmp_path / "c.db", lambda c: c.put(result, 60), lambda c: c.get("medarbejder@kommune.test"))
    assert back is not None and back.chosen == chosen
    assert back.errors == result.errors


def test_a_row_in_the_earlier_format_still_reads(oces_pki: OcesPki) -> None:
    import json

    from certdir.cache import _result

    row = ("a@b.test", "not-found", "no usable certificate", None, None, None,
           json.dumps([{"source": "ldap:oces", "code": "expired", "reason": "expired on x", "entry": "", "der": None}]))
    back = _result(row)
    assert back is not None and [r.code for r in back.rejected] == [RejectionCode.EXPIRED] and back.errors == ()
