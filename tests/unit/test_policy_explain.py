"""`sikkermail explain --offline`: level, masked evidence, rule and decision chain per recipient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from tests.corpus.build import Attachment, Case, build_message, make_pdf

SHIPPED = Path(__file__).resolve().parents[2] / "policy.toml"


@pytest.fixture()
def eml(tmp_path: Path) -> Path:
    case = Case("explain", "sensitive", "Journal", "Dit CPR-nr. er 070761-4285.",
                attachments=(Attachment("journal.pdf", make_pdf("Diagnose: depression")),),
                sender="Læge <laege@klinik.example.dk>")
    path = tmp_path / "m.eml"
    path.write_bytes(build_message(case))
    return path


def test_explain_offline_text(eml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["explain", str(eml), "--to", "a@example.dk", "--offline", "--policy", str(SHIPPED)])
    out = capsys.readouterr().out
    assert status == 0
    assert "level: sensitive" in out
    assert "070761-xxxx" in out and "4285" not in out
    assert "attachment:journal.pdf" in out
    assert "from laege@klinik.example.dk" in out
    assert "S/MIME unknown: offline" in out
    assert "=> defer" in out


def test_explain_json_with_rules_and_two_recipients(eml: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(SHIPPED.read_text(encoding="utf-8") + """
[[rules]]
name = "courts"
recipient_domains = ["domstol.dk"]
protections = ["smime"]
""", encoding="utf-8")
    config = tmp_path / "sikkermail.toml"
    config.write_text(f'[policy]\nfile = "{policy.name}"\n', encoding="utf-8")
    status = main(["explain", str(eml), "--to", "x@example.dk", "--to", "dommer@domstol.dk",
                   "--from", "sender@firm.dk", "--offline", "--json", "-c", str(config)])
    data = json.loads(capsys.readouterr().out)
    assert status == 0
    assert data["sender"] == "sender@firm.dk"
    assert data["classification"]["level"] == "sensitive"
    detectors = {e["detector"]: e for e in data["classification"]["evidence"]}
    assert detectors["cpr"]["samples"] == ["070761-xxxx"]
    assert detectors["art9.health"]["where"] == ["attachment:journal.pdf"]
    first, second = data["recipients"]
    assert first["protections"] == ["smime", "tls-verified"] and first["action"] == "defer"
    assert second["rule"] == "level:sensitive+rule:courts"
    assert second["protections"] == ["smime"]
    assert [s["possible"] for s in second["steps"]] == [None, None]


def test_explain_public_message_is_sent_opportunistically(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.eml"
    path.write_bytes(build_message(Case("p", "public", "Frokost", "Vi ses kl. 12.")))
    assert main(["explain", str(path), "--to", "a@b.dk", "--offline", "--policy", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "level: public" in out and "=> send with tls-opportunistic" in out


def test_explain_bad_policy_reports_file_and_line(eml: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SHIPPED.read_text(encoding="utf-8").replace(
        'fallback = "deliver"', 'fallback = "sometimes"'), encoding="utf-8")
    assert main(["explain", str(eml), "--to", "a@b.dk", "--offline", "--policy", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:7: levels.public.fallback" in err


def test_explain_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["explain", str(tmp_path / "none.eml"), "--to", "a@b.dk", "--offline",
                   "--policy", str(SHIPPED)])
    assert status == 1
    assert capsys.readouterr().err.strip().endswith("cannot read: No such file or directory")


def test_explain_needs_a_recipient(eml: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["explain", str(eml), "--offline"])
    assert info.value.code == 2
