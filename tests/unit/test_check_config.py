"""`sikkermail check-config`: every problem of the config and of the policy, in one run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BAD_POLICY = ((ROOT / "policy.toml").read_text()
              + '\n[[rules]]\nname = "courts"\nrecipient_domains = ["domstol.dk"]\n'
                'protections = ["carrier-pigeon"]\n')


def _check(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(config), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def _files(tmp_path: Path, config_error: bool) -> tuple[Path, Path]:
    policy = tmp_path / "policy.toml"
    policy.write_text(BAD_POLICY)
    config = tmp_path / "sikkermail.toml"
    text = (ROOT / "config.example.toml").read_text()
    if config_error:
        text = text.replace("\nnameservers = []", '\nnameservers = ["resolver.example"]', 1)
        assert "resolver.example" in text
    config.write_text(text)
    return config, policy


def _policy_line() -> int:
    return next(i for i, line in enumerate(BAD_POLICY.splitlines(), 1) if "carrier-pigeon" in line)


def test_a_bad_policy_file_is_reported_with_its_line(tmp_path: Path) -> None:
    config, policy = _files(tmp_path, config_error=False)
    result = _check(config)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{policy}:{_policy_line()}: rules[0].protections: unknown protection 'carrier-pigeon'" \
        in result.stderr


def test_an_invalid_config_and_a_bad_policy_are_both_reported(tmp_path: Path) -> None:
    config, policy = _files(tmp_path, config_error=True)
    result = _check(config)
    assert result.returncode == 1
    assert "dns.nameservers: not an IP address" in result.stderr
    assert f"{policy}:{_policy_line()}: rules[0].protections" in result.stderr
    shown = json.loads(_check(config, "--json").stdout)
    assert shown["ok"] is False and shown["policy"] == str(policy)
    assert any("dns.nameservers" in p for p in shown["problems"])
    assert any("carrier-pigeon" in p for p in shown["problems"])


def test_a_valid_pair_is_ok(tmp_path: Path) -> None:
    config, policy = _files(tmp_path, config_error=False)
    policy.write_text((ROOT / "policy.toml").read_text())
    result = _check(config)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
