"""`sikkermail log ...` as an administrator runs it: a subprocess with a config file.

Tampering (edit, delete, reorder, truncate) is done with the database's own
client library, as someone with write access to the database would.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import AuditStore
from gateway.config import Config
from gateway.events import RecipientStatus
from policy.model import Level, Protection
from tests.fixtures.compliance import Outcome, message_events

T0 = 1_790_000_000.0


def sikkermail(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Run from the config's folder, as an administrator would: not from the source tree.
    return subprocess.run([sys.executable, "-m", "gateway", *args, "-c", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=config.parent)


def tamper(cfg: Config, *statements: tuple[str, tuple[Any, ...]]) -> None:
    if cfg.sqlite_path:
        conn = sqlite3.connect(cfg.sqlite_path)
        for sql, params in statements:
            conn.execute(sql, params)
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(cfg.audit.database) as conn:
            for sql, params in statements:
                conn.execute(sql.replace("?", "%s"), params)


@pytest.fixture
def filled(audit_store: AuditStore) -> AuditStore:
    for i, level in enumerate([Level.PUBLIC, Level.CONFIDENTIAL, Level.SENSITIVE, Level.CONFIDENTIAL]):
        audit_store.append_many_sync(message_events(f"M{i}", T0 + 3600 * i, level, [
            Outcome(f"r{i}@kunde{i}.test", Protection.TLS_VERIFIED, RecipientStatus.DELIVERED),
            Outcome(f"s{i}@advokat.test", Protection.SMIME, RecipientStatus.DELIVERED, cert_found=True)],
            cpr_samples=("010190-xxxx",) if level is not Level.PUBLIC else ()))
    return audit_store


def seq_of(cfg: Config, message: str, kind: str) -> int:
    if cfg.sqlite_path:
        conn = sqlite3.connect(cfg.sqlite_path)
        row = conn.execute("SELECT seq FROM events WHERE subject_id = ? AND kind = ? ORDER BY seq",
                           (message, kind)).fetchone()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(cfg.audit.database) as conn:
            row = conn.execute("SELECT seq FROM events WHERE subject_id = %s AND kind = %s ORDER BY seq",
                               (message, kind)).fetchone()
    assert row is not None
    return int(row[0])


def test_verify_passes_on_an_untouched_log(filled: AuditStore, compliance_config: Path) -> None:
    result = sikkermail(compliance_config, "log", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 24 events")


def test_verify_detects_an_edited_event(filled: AuditStore, cfg: Config, compliance_config: Path) -> None:
    seq = seq_of(cfg, "M2", "message.classified")
    tamper(cfg, ("UPDATE events SET body = replace(body, '\"sensitive\"', '\"public\"') WHERE seq = ?", (seq,)))
    result = sikkermail(compliance_config, "log", "verify", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["first_broken_record"] == "M2"
    assert report["problems"][0]["seq"] == seq and "edited" in report["problems"][0]["what"]


def test_verify_detects_an_edited_record_projection(filled: AuditStore, cfg: Config, compliance_config: Path) -> None:
    tamper(cfg, ("UPDATE messages SET record = replace(record, '\"tls-verified\"', '\"smime\"') WHERE id = ?", ("M1",)))
    result = sikkermail(compliance_config, "log", "verify")
    assert result.returncode == 1
    assert "first broken record M1" in result.stdout


def test_verify_detects_a_deleted_event(filled: AuditStore, cfg: Config, compliance_config: Path) -> None:
    seq = seq_of(cfg, "M1", "recipient.updated")
    tamper(cfg, ("DELETE FROM events WHERE seq = ?", (seq,)))
    result = sikkermail(compliance_config, "log", "verify")
    assert result.returncode == 1
    assert result.stdout.startswith("BROKEN: first broken record M1")
    assert f"events {seq}..{seq} are missing" in result.stdout


def test_verify_detects_a_deleted_message(filled: AuditStore, cfg: Config, compliance_config: Path) -> None:
    tamper(cfg, ("DELETE FROM events WHERE subject_id = ?", ("M1",)),
           ("DELETE FROM messages WHERE id = ?", ("M1",)),
           ("DELETE FROM recipients WHERE message_id = ?", ("M1",)))
    result = sikkermail(compliance_config, "log", "verify", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    # The gap shows at the first event after the deleted ones: M2's.
    assert report["first_broken_record"] == "M2"
    assert "missing" in report["problems"][0]["what"]


def test_verify_detects_reordered_events(filled: AuditStore, cfg: Config, compliance_config: Path) -> None:
    a, b = seq_of(cfg, "M1", "message.accepted"), seq_of(cfg, "M2", "message.accepted")
    tamper(cfg, ("UPDATE events SET seq = -1 WHERE seq = ?", (a,)),
           ("UPDATE events SET seq = ? WHERE seq = ?", (a, b)),
           ("UPDATE events SET seq = ? WHERE seq = -1", (b,)))
    result = sikkermail(compliance_config, "log", "verify", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["first_broken_record"] == "M2"  # now sitting where M1's first event was
    assert report["problems"][0]["seq"] == a


def test_verify_detects_removed_newest_events(filled: AuditStore, cfg: Config, compliance_config: Path) -> None:
    last = seq_of(cfg, "M3", "recipient.updated") + 1
    tamper(cfg, ("DELETE FROM events WHERE seq >= ?", (last,)))
    result = sikkermail(compliance_config, "log", "verify")
    assert result.returncode == 1
    assert "newest events removed" in result.stdout or "M3" in result.stdout


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """In-process, for the read-only commands (the tampering tests above use real subprocesses)."""
    import contextlib
    import io

    from gateway.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([*args, "-c", str(config)])
        except SystemExit as exc:
            status = int(exc.code or 0)
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def test_search_table_json_and_jsonl(filled: AuditStore, compliance_config: Path) -> None:
    table = cli(compliance_config, "log", "search", "--level", "sensitive")
    assert table.returncode == 0, table.stderr
    assert "M2" in table.stdout and "M1" not in table.stdout and "1 message(s)" in table.stdout
    as_json = json.loads(cli(compliance_config, "log", "search", "--recipient", "kunde1", "--json").stdout)
    assert [r["id"] for r in as_json] == ["M1"]
    lines = cli(compliance_config, "log", "search", "--jsonl").stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["M0", "M1", "M2", "M3"]
    assert all("010190-1" not in line for line in lines)


def test_search_by_time_and_usage_errors(filled: AuditStore, compliance_config: Path) -> None:
    import datetime as dt

    day = dt.datetime.fromtimestamp(T0 + 3600).astimezone().strftime("%Y-%m-%dT%H:%M:%S")
    result = cli(compliance_config, "log", "search", "--since", day, "--json")
    assert [r["id"] for r in json.loads(result.stdout)] == ["M1", "M2", "M3"]
    bad = cli(compliance_config, "log", "search", "--since", "last tuesday")
    assert bad.returncode == 1 and "not a date" in bad.stderr and "Traceback" not in bad.stderr
    assert cli(compliance_config, "log", "search", "--level", "secret").returncode == 2


def test_show_prints_a_readable_record(filled: AuditStore, compliance_config: Path) -> None:
    result = cli(compliance_config, "log", "show", "M2")
    assert result.returncode == 0, result.stderr
    assert "sensitive" in result.stdout and "s2@advokat.test" in result.stdout
    assert "CN=OCES udstedende CA" in result.stdout and "010190-xxxx" in result.stdout
    missing = cli(compliance_config, "log", "show", "NOPE")
    assert missing.returncode == 1 and "no audit record NOPE" in missing.stderr


def test_unreachable_database_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from gateway.cli import main

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "sikkermail.toml"
    config.write_text(f'[audit]\ndatabase = "postgresql://gw:hemmelig@127.0.0.1:{port}/audit"\n')
    status = main(["log", "verify", "-c", str(config)])
    err = capsys.readouterr().err
    assert status == 1
    assert "cannot connect to the audit database" in err and "hemmelig" not in err
    assert len(err.strip().splitlines()) == 1


def test_verify_detects_an_edited_search_index(filled: AuditStore, cfg: Config, compliance_config: Path) -> None:
    tamper(cfg, ("UPDATE recipients SET protection = 'smime' WHERE message_id = ?", ("M0",)))
    result = sikkermail(compliance_config, "log", "verify", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["first_broken_record"] == "M0"
