"""Configuration checks for SMTP intake and the gateway's state: a bad value is reported
by check-config with file, line and key, before it can fail every message at run time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.certdir_setup import cache_path as certdir_cache_path
from gateway.config import ConfigError, load_config, valid_hostname
from gateway.probe_setup import probe_cache_path

ROOT = Path(__file__).resolve().parents[2]


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("name", ["localhost", "gateway.example.dk", "xn--gt-via.example.dk", "mx-1.a.b"])
def test_ascii_host_names_are_valid(name):
    assert valid_hostname(name)


@pytest.mark.parametrize("name", ["gæt.example.dk", "", "gateway example.dk", "-gw.example.dk", "gw..dk",
                                  "gw_1.example.dk", "a" * 64 + ".dk", "gw.example.dk.", "[127.0.0.1]"])
def test_other_host_names_are_not(name):
    assert not valid_hostname(name)


def test_check_config_rejects_a_non_ascii_hostname_with_file_line_and_key(tmp_path):
    path = tmp_path / "sikkermail.toml"
    path.write_text('[server]\nlisten = "127.0.0.1:10025"\nhostname = "gæt.example.dk"\n')
    result = _check_config(path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{path}:3: server.hostname: not a host name: 'gæt.example.dk'" in result.stderr
    with pytest.raises(ConfigError):
        load_config(path)


def test_nameservers_on_different_ports_are_accepted(tmp_path):
    # each is asked on its own port (tests/integration/test_probe_details.py)
    path = tmp_path / "sikkermail.toml"
    path.write_text('[dns]\ntimeout = "2s"\nnameservers = ["127.0.0.1:5300", "127.0.0.2"]\n'
                    f'[policy]\nfile = "{ROOT / "policy.toml"}"\n')
    result = _check_config(path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("servers", ['["127.0.0.1:5300", "127.0.0.2:5300"]', '["127.0.0.1", "[::1]:53"]',
                                     '["127.0.0.1:5300"]'])
def test_nameservers_on_one_port_are_fine(tmp_path, servers):
    path = tmp_path / "sikkermail.toml"
    path.write_text(f"[dns]\nnameservers = {servers}\n")
    assert load_config(path).dns.nameservers


def _docker_volumes() -> list[Path]:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("VOLUME"):
            return [Path(v) for v in json.loads(line.removeprefix("VOLUME").strip())]
    raise AssertionError("the Dockerfile declares no VOLUME")


def _written_by_the_gateway(cfg) -> dict[str, Path]:
    return {
        "spool": Path(cfg.spool.path),
        "audit": Path(cfg.sqlite_path),
        "quarantine": Path(cfg.quarantine.path),
        "certs": Path(cfg.certdir.local_store),
        "probe cache": probe_cache_path(cfg),
        "certificate cache": certdir_cache_path(cfg),
    }


def test_in_the_container_everything_the_gateway_writes_is_in_a_volume():
    cfg = load_config(ROOT / "docker" / "sikkermail.toml")
    volumes = _docker_volumes()
    for what, path in _written_by_the_gateway(cfg).items():
        assert any(path.is_relative_to(volume) for volume in volumes), f"{what} at {path} is in no volume"
    assert probe_cache_path(cfg) == Path("/var/lib/sikkermail/probecache.db")
    assert certdir_cache_path(cfg) == Path("/var/lib/sikkermail/certcache.db")


def test_the_example_config_keeps_both_caches_under_var():
    cfg = load_config(ROOT / "config.example.toml")
    assert probe_cache_path(cfg) == ROOT / "var" / "probecache.db"
    assert certdir_cache_path(cfg) == ROOT / "var" / "certcache.db"


def test_configured_cache_paths_are_resolved_against_the_config_folder(tmp_path):
    path = tmp_path / "sikkermail.toml"
    path.write_text('[tls]\nprobe_cache = "state/probe.db"\n[certdir]\ncache_database = "state/cert.db"\n')
    cfg = load_config(path)
    assert probe_cache_path(cfg) == tmp_path / "state" / "probe.db"
    assert certdir_cache_path(cfg) == tmp_path / "state" / "cert.db"
