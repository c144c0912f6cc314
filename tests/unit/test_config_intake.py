"""Configuration checks for SMTP intake and the gateway's state: a bad value is reported
by check-config with file, line and key, before it can fail every message at run time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, valid_hostname

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
