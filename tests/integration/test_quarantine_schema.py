"""The shared quarantine table is part of the audit schema's migrations (schema_migrations), on PostgreSQL only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from gateway.audit import open_audit
from gateway.config import load_config
from gateway.quarantine import QuarantineStore
from tests.integration.test_quarantine_shared import write_node_config


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables "
                            "WHERE table_schema = current_schema()").fetchall()
    return {r[0] for r in rows}


def _versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()]


def test_opening_the_audit_creates_the_quarantine_table_as_a_migration(tmp_path: Path, fresh_postgres_url: str) -> None:
    store = open_audit(load_config(write_node_config(tmp_path / "node", fresh_postgres_url)))
    store.close_sync()
    assert "quarantine" in _tables(fresh_postgres_url)
    assert _versions(fresh_postgres_url) == [1, 2]


def test_a_quarantine_command_alone_migrates_the_same_schema(tmp_path: Path, fresh_postgres_url: str) -> None:
    QuarantineStore(load_config(write_node_config(tmp_path / "node", fresh_postgres_url))).list_held()
    assert {"quarantine", "events", "schema_migrations"} <= _tables(fresh_postgres_url)
    assert _versions(fresh_postgres_url) == [1, 2]


def test_a_quarantine_table_made_before_the_migration_is_kept(tmp_path: Path, fresh_postgres_url: str) -> None:
    cfg = load_config(write_node_config(tmp_path / "node", fresh_postgres_url))
    open_audit(cfg).close_sync()
    with psycopg.connect(fresh_postgres_url, autocommit=True) as conn:  # as an older gateway left it
        conn.execute("DELETE FROM schema_migrations WHERE version = 2")
        conn.execute("INSERT INTO quarantine (id, meta, message) VALUES ('Q0000000000000001', '{}', 'x')")
    open_audit(cfg).close_sync()
    assert _versions(fresh_postgres_url) == [1, 2]
    with psycopg.connect(fresh_postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 1


def test_sqlite_records_the_migration_without_a_table(tmp_path: Path) -> None:
    config = tmp_path / "sikkermail.toml"
    config.write_text('[spool]\npath = "var/spool"\n[audit]\ndatabase = "sqlite:///var/audit.db"\n')
    open_audit(load_config(config)).close_sync()
    with sqlite3.connect(tmp_path / "var" / "audit.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert "quarantine" not in tables and versions == [1, 2]
