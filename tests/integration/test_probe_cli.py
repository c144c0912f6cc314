"""`sikkermail probe DOMAIN [--json] [--refresh]` against the lab."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.cli import main


@pytest.fixture
def config(tls_lab, tmp_path):
    path = tmp_path / "sikkermail.toml"
    path.write_text(f'[spool]\npath = "{tmp_path}/var/spool"\n\n{tls_lab.config_toml()}')
    return path


def test_probe_prints_mx_details_and_grade(tls_lab, config, capsys):
    server = tls_lab.mx("tls13")
    domain = tls_lab.mail_domain("cli-good.test", [server])
    assert main(["probe", domain, "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{domain}: tls-verified")
    assert f"MX 10 {server.name} [{server.address}]: STARTTLS yes, TLSv1.3" in out
    assert "certificate verified" in out and "MTA-STS: no policy" in out


def test_probe_json_and_the_cache_file(tls_lab, config, tmp_path, capsys):
    domain = tls_lab.mail_domain("cli-json.test", [tls_lab.mx("selfsigned")])
    assert main(["probe", domain, "-c", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "graded" and data["grade"] == "tls-unverified"
    assert data["mx"][0]["cert_verified"] is False and data["from_cache"] is False
    assert (tmp_path / "var" / "probecache.db").exists()
    assert main(["probe", domain, "-c", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["from_cache"] is True
    assert main(["probe", domain, "-c", str(config), "--json", "--refresh"]) == 0
    assert json.loads(capsys.readouterr().out)["from_cache"] is False


def test_probe_exits_1_when_the_grade_is_unknown(dns_lab, config, capsys):
    dns_lab.zone.fail("cli-servfail.test")
    assert main(["probe", "cli-servfail.test", "-c", str(config)]) == 1
    assert "unknown" in capsys.readouterr().out


def test_probe_command_runs_as_a_program(tls_lab, config):
    domain = tls_lab.mail_domain("cli-program.test", [tls_lab.mx("plain")])
    done = subprocess.run([sys.executable, "-m", "gateway", "probe", domain, "-c", str(config), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["grade"] == "none"
