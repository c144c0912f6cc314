"""`accept_ec_keys = true` is refused: certdir would pick EC certificates that
gateway/cms.py cannot encrypt to (it does RSA key transport only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "sikkermail.toml"
    path.write_text(f'[spool]\npath = "{tmp_path / "spool"}"\n[policy]\nfile = "{ROOT / "policy.toml"}"\n'
                    f"[certdir]\naccept_ec_keys = {value}\n")
    return path


def test_check_config_reports_accept_ec_keys_true_as_an_error(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check-config", "-c", str(_config(tmp_path, "true")), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["ok"] is False
    [problem] = [p for p in report["problems"] if "certdir.accept_ec_keys" in p]
    assert "sikkermail.toml:6: " in problem  # the file and the line of the key
    assert "EC key agreement (ECDH) is not supported for S/MIME encryption yet" in problem


def test_accept_ec_keys_false_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(_config(tmp_path, "false"))]) == 0, capsys.readouterr().err
