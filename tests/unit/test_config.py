"""Configuration: every problem with file, line and key; sizes and durations as strings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_duration, parse_size

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid_and_uses_local_folders():
    cfg = load_config(ROOT / "config.example.toml")
    assert cfg.listen == ("127.0.0.1", 10025)
    assert cfg.spool.path == str(ROOT / "var" / "spool")
    assert cfg.sqlite_path == str(ROOT / "var" / "audit.db")
    assert cfg.delivery.retry == [60.0, 300.0, 900.0, 3600.0, 14400.0]


@pytest.mark.parametrize("text,value", [("50MB", 50 * 1024**2), ("256KB", 262144), ("10", 10), ("1.5G", int(1.5 * 1024**3))])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text,value", [("90s", 90), ("5m", 300), ("12h", 43200), ("3d", 259200), ("250ms", 0.25)])
def test_durations(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize("bad", ["fast", "-1s", "10 parsecs", True])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_every_problem_is_reported_with_line_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[server]\nlisten = "nowhere"\nmax_message_size = "huge"\ncolour = "blue"\n'
        '[delivery]\nretry = ["1m", "soon"]\n[smime]\ncipher = "des"\n[mystery]\nx = 1\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = [str(p) for p in info.value.problems]
    assert f"{path}:2: server.listen: not host:port: 'nowhere'" in text
    assert any(t.startswith(f"{path}:3: server.max_message_size: not a size") for t in text)
    assert f"{path}:4: server.colour: unknown key" in text
    assert any(t.startswith(f"{path}:6: delivery.retry") and "soon" in t for t in text)
    assert f"{path}:8: smime.cipher: must be aes256-cbc or aes256-gcm" in text
    assert f"{path}:9: mystery: unknown section" in text


def test_broken_toml_names_the_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[server]\nlisten = "127.0.0.1:1\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].line == 2


def test_check_config_cli_prints_problems_without_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[dns]\nnameservers = ["resolver.example"]\n')
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(path)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{path}:2: dns.nameservers: not an IP address[:port]: 'resolver.example'" in result.stderr


def test_check_config_accepts_the_example():
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", "config.example.toml"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_usage_error_exits_2():
    result = subprocess.run([sys.executable, "-m", "gateway", "no-such-command"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 2


def test_the_example_documents_every_key_with_its_default():
    """config.example.toml is the reference: each key of the schema, at its default value."""
    import dataclasses
    import tomllib

    from gateway.config import _SECTIONS, ServerConfig

    text = (ROOT / "config.example.toml").read_text()
    data = tomllib.loads(text)
    example = load_config(ROOT / "config.example.toml")
    missing = []
    for section, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name == "ldap":
                continue  # [[certdir.ldap]] is a list of tables: shown commented out, none by default
            if f.name not in data.get(section, {}):
                missing.append(f"{section}.{f.name}")
                continue
            default = cls()
            assert getattr(getattr(example, section), f.name) == getattr(default, f.name) or \
                f.type in ("ConfigPath", "list[ConfigPath]"), f"{section}.{f.name} differs from its default"
    assert missing == []
    assert isinstance(example.server, ServerConfig)
    from gateway.config import LdapSourceConfig

    for f in dataclasses.fields(LdapSourceConfig):
        assert f"# {f.name} = " in text, f"certdir.ldap.{f.name} is not shown in the example"
