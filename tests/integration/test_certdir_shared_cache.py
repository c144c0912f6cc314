"""The certificate lookup cache shared in PostgreSQL between gateway nodes (SPEC:
more than one machine): two nodes, two configs with their own spool, one audit
database. Node B's directory URL is a dead port, so whatever B answers without
the cache is UNKNOWN: a FOUND or NOT_FOUND from B came from A through PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from certdir import LookupResult, LookupStatus, RejectionCode
from certdir.cache import LookupCache
from gateway.certdir_setup import PostgresCacheDatabase, directory_from_config
from gateway.cli import main
from gateway.config import load_config
from tests.fixtures.oces_pki import OcesPki, free_port
from tests.fixtures.slapd import SlapdServer
from tests.integration.test_certdir_cli import sha256, write_config


def node(tmp_path: Path, name: str, pki: OcesPki, ldap_url: str, database_url: str) -> Path:
    return write_config(tmp_path / name, pki, ldap_url, f'[audit]\ndatabase = "{database_url}"')


def lookup(config: Path, *addresses: str, refresh: bool = False) -> list[LookupResult]:
    async def go() -> list[LookupResult]:
        directory = directory_from_config(load_config(config))
        try:
            return [await directory.lookup(a, refresh=refresh) for a in addresses]
        finally:
            await directory.close()
    return asyncio.run(go())


def rows(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("SELECT address, status FROM certdir_lookup").fetchall())


def test_an_answer_found_on_one_node_is_served_to_another_from_postgresql(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, dead_ldap_url: str, fresh_postgres_url: str) -> None:
    a = node(tmp_path, "a", oces_pki, slapd.url, fresh_postgres_url)
    b = node(tmp_path, "b", oces_pki, dead_ldap_url, fresh_postgres_url)
    (first, two) = lookup(a, "person@borger.test", "two@kommune.test")
    assert first.status is LookupStatus.FOUND and not first.cached
    assert rows(fresh_postgres_url) == {"person@borger.test": "found", "two@kommune.test": "found"}
    (shared, shared_two, never_asked) = lookup(b, "person@borger.test", "two@kommune.test", "medarbejder@kommune.test")
    assert shared.status is LookupStatus.FOUND and shared.cached
    assert shared.chosen is not None and shared.chosen.sha256 == sha256(oces_pki, "person")
    assert shared.chosen.source == "ldap:oces" and shared.reason == first.reason
    assert shared_two.cached and shared_two.chosen is not None
    assert shared_two.chosen.sha256 == sha256(oces_pki, "two_long") and shared_two.reason == two.reason
    assert [(r.code, r.candidate.sha256 if r.candidate else None) for r in shared_two.rejected] == [
        (RejectionCode.NOT_CHOSEN, sha256(oces_pki, "two_short"))]
    assert never_asked.status is LookupStatus.UNKNOWN  # B's own directory is really down
    # Neither node keeps a cache file of its own beside its spool.
    assert not (tmp_path / "a" / "certcache.db").exists() and not (tmp_path / "b" / "certcache.db").exists()


def test_negative_answers_are_shared_and_unknowns_never_stored(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, dead_ldap_url: str, fresh_postgres_url: str) -> None:
    a = node(tmp_path, "a", oces_pki, slapd.url, fresh_postgres_url)
    b = node(tmp_path, "b", oces_pki, dead_ldap_url, fresh_postgres_url)
    nobody, expired = lookup(a, "nobody@kommune.test", "expired@kommune.test")
    assert nobody.status is expired.status is LookupStatus.NOT_FOUND
    shared_nobody, shared_expired, unknown = lookup(b, "nobody@kommune.test", "expired@kommune.test",
                                                    "person@borger.test")
    assert shared_nobody.status is LookupStatus.NOT_FOUND and shared_nobody.cached
    assert shared_nobody.reason == nobody.reason
    assert shared_expired.status is LookupStatus.NOT_FOUND and shared_expired.cached
    assert [r.code for r in shared_expired.rejected] == [RejectionCode.EXPIRED]
    assert shared_expired.rejected[0].candidate is not None
    assert shared_expired.rejected[0].candidate.sha256 == sha256(oces_pki, "expired")
    assert unknown.status is LookupStatus.UNKNOWN
    assert rows(fresh_postgres_url) == {"nobody@kommune.test": "not-found", "expired@kommune.test": "not-found"}
    (fresh,) = lookup(a, "person@borger.test")  # B's unknown left nothing for A to read
    assert fresh.status is LookupStatus.FOUND and not fresh.cached


def test_refresh_bypasses_the_shared_cache_and_an_unknown_does_not_replace_an_answer(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, dead_ldap_url: str, fresh_postgres_url: str) -> None:
    a = node(tmp_path, "a", oces_pki, slapd.url, fresh_postgres_url)
    b = node(tmp_path, "b", oces_pki, dead_ldap_url, fresh_postgres_url)
    lookup(a, "medarbejder@kommune.test")
    (refreshed,) = lookup(b, "medarbejder@kommune.test", refresh=True)
    assert refreshed.status is LookupStatus.UNKNOWN and not refreshed.cached
    (cached,) = lookup(b, "medarbejder@kommune.test")
    assert cached.status is LookupStatus.FOUND and cached.cached
    assert cached.chosen is not None and cached.chosen.sha256 == sha256(oces_pki, "employee3")


def test_certs_import_on_one_node_forgets_the_negative_answer_another_cached(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path, fresh_postgres_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Both directories live here: the import validates the chain with the issuer from LDAP.
    a = node(tmp_path, "a", oces_pki, slapd.url, fresh_postgres_url)
    b = node(tmp_path, "b", oces_pki, slapd.url, fresh_postgres_url)
    (missing, other) = lookup(a, "lokal@andet.test", "nobody@kommune.test")
    assert missing.status is other.status is LookupStatus.NOT_FOUND
    (still,) = lookup(b, "lokal@andet.test")
    assert still.status is LookupStatus.NOT_FOUND and still.cached  # before the import: A's answer
    code = main(["certs", "import", str(oces_pki.leaf("local_only").cert_path), "-c", str(b)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert rows(fresh_postgres_url) == {"nobody@kommune.test": "not-found"}  # only that address is forgotten
    (found,) = lookup(b, "lokal@andet.test")
    assert found.status is LookupStatus.FOUND and not found.cached
    assert found.chosen is not None and found.chosen.source == "local:address"
    (shared,) = lookup(a, "lokal@andet.test")  # B's new answer, not the old one
    assert shared.status is LookupStatus.FOUND and shared.cached
    assert shared.chosen is not None and shared.chosen.sha256 == sha256(oces_pki, "local_only")


class CountingDatabase(PostgresCacheDatabase):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.connects = 0

    def connect(self) -> None:
        self.connects += 1
        super().connect()


def test_unreachable_postgresql_is_a_cache_miss_not_a_wrong_answer(
        oces_pki: OcesPki, slapd: SlapdServer, tmp_path: Path) -> None:
    config = node(tmp_path, "a", oces_pki, slapd.url, f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    database = CountingDatabase(load_config(config).audit.database)

    async def go() -> list[LookupResult]:
        directory = directory_from_config(load_config(config))
        assert directory.cache is not None
        directory.cache.database = database
        try:
            return [await directory.lookup(a) for a in ("person@borger.test", "nobody@kommune.test")]
        finally:
            await directory.close()

    found, nobody = asyncio.run(go())
    assert found.status is LookupStatus.FOUND and not found.cached
    assert found.chosen is not None and found.chosen.sha256 == sha256(oces_pki, "person")
    assert nobody.status is LookupStatus.NOT_FOUND and not nobody.cached
    assert database.connects == 1  # refused once; the next calls are misses without asking again
    assert not (tmp_path / "a" / "certcache.db").exists()  # no silent fall-back to a node-local cache



def test_forget_domain_in_postgresql_escapes_like_wildcards_and_ignores_case(fresh_postgres_url: str) -> None:
    async def go() -> list[LookupResult | None]:
        cache = LookupCache(PostgresCacheDatabase(fresh_postgres_url))
        try:
            for address in ("x@a_b.test", "y@axb.test", "z@a%b.test", "Per@a%b.test", "w@b.test"):
                await cache.put(LookupResult(address, LookupStatus.NOT_FOUND, "none"), 60)
            await cache.forget_domain("a_b.test")
            await cache.forget_address("per@A%B.test")
            return [await cache.get(a) for a in ("x@a_b.test", "y@axb.test", "z@a%b.test", "Per@a%b.test")]
        finally:
            await cache.close()

    assert [r is not None for r in asyncio.run(go())] == [False, True, True, False]
    assert set(rows(fresh_postgres_url)) == {"y@axb.test", "z@a%b.test", "w@b.test"}
