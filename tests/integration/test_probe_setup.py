"""Wiring: the prober built from the configuration, and its result as the policy's TlsFacts."""

from __future__ import annotations

import asyncio

from gateway.config import load_config
from gateway.probe_setup import probe_cache_path, prober_from_config, tls_facts
from policy.model import FactStatus, TlsGrade
from tlsprobe import Grade


def _config(tmp_path, tls_lab, extra=""):
    path = tmp_path / "sikkermail.toml"
    path.write_text(f'[spool]\npath = "{tmp_path}/var/spool"\n\n{tls_lab.config_toml()}{extra}')
    return load_config(path)


def _grade(cfg, domain):
    async def go():
        prober = prober_from_config(cfg)
        try:
            return await prober.grade(domain)
        finally:
            await prober.close()
    return asyncio.run(go())


def test_prober_from_config_uses_the_lab_settings_and_cache(tls_lab, tmp_path):
    cfg = _config(tmp_path, tls_lab)
    result = _grade(cfg, tls_lab.mail_domain("w-good.test", [tls_lab.mx("tls13")]))
    facts = tls_facts(result)
    assert facts.status is FactStatus.YES and facts.grade is TlsGrade.VERIFIED
    assert probe_cache_path(cfg) == tmp_path / "var" / "probecache.db" and probe_cache_path(cfg).exists()


def test_min_version_from_config_applies(tls_lab, tmp_path):
    cfg = _config(tmp_path, tls_lab, 'min_version = "TLSv1.3"\n')
    facts = tls_facts(_grade(cfg, tls_lab.mail_domain("w-min13.test", [tls_lab.mx("tls12")])))
    assert facts.status is FactStatus.YES and facts.grade is TlsGrade.NONE


def test_unknown_grade_becomes_unknown_facts_never_none(dns_lab, tls_lab, tmp_path):
    dns_lab.zone.fail("w-servfail.test")
    facts = tls_facts(_grade(_config(tmp_path, tls_lab), "w-servfail.test"))
    assert facts.status is FactStatus.UNKNOWN and facts.grade is None


def test_domain_without_mail_servers_has_no_tls(tls_lab, tmp_path):
    facts = tls_facts(_grade(_config(tmp_path, tls_lab), "w-nxdomain.test"))
    assert facts.status is FactStatus.NO and facts.grade is None


def test_mta_sts_enforce_is_named_in_the_facts(tls_lab, tmp_path):
    domain = tls_lab.mail_domain("w-sts.test", [tls_lab.mx("tls13")])
    tls_lab.mta_sts.publish(domain, mx=("*.tlslab.test",))
    facts = tls_facts(_grade(_config(tmp_path, tls_lab), domain))
    assert facts.grade is TlsGrade.VERIFIED and facts.reason.startswith("tls-verified via MTA-STS enforce")


def test_probe_cache_is_shared_in_postgresql_when_the_audit_database_is(tls_lab, tmp_path, fresh_postgres_url):
    import psycopg

    server = tls_lab.start("tls13")
    domain = tls_lab.mail_domain("w-pg.test", [server])
    cfg = _config(tmp_path, tls_lab, f'\n[audit]\ndatabase = "{fresh_postgres_url}"\n')
    first, second = _grade(cfg, domain), _grade(cfg, domain)
    assert first.grade is second.grade is Grade.VERIFIED
    assert not first.from_cache and second.from_cache and server.connections == 1
    assert not probe_cache_path(cfg).exists()
    with psycopg.connect(fresh_postgres_url) as conn:
        rows = conn.execute("SELECT domain FROM probe_domain_tls").fetchall()
    assert rows == [(domain,)]


def test_unreachable_postgresql_cache_is_one_clear_cli_error(tls_lab, tmp_path, capsys):
    from gateway.cli import main

    path = tmp_path / "sikkermail.toml"
    path.write_text(f'[spool]\npath = "{tmp_path}/var/spool"\n\n{tls_lab.config_toml()}\n'
                    '[audit]\ndatabase = "postgresql://nobody@127.0.0.1:1/none"\n')
    assert main(["probe", "w-any.test", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sikkermail: probe cache in PostgreSQL:") and "Traceback" not in err
