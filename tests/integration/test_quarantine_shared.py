"""Two gateway nodes sharing one PostgreSQL database share their held messages (SPEC: more than one machine).

Each node has its own config, spool and quarantine folder; only `[audit] database`
is the same. What one node holds, the other lists, shows, releases (into its own
spool), deletes and purges; a release racing another release of the same id
happens once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.audit import AuditStore, StoreEvent, open_audit
from gateway.config import Config, load_config
from gateway.quarantine import NotHeldError, QuarantineStore, Released, delete, purge, release
from gateway.spool import Kind, Spool, State
from policy.model import Level
from tests.fixtures.relay_lab import wait_until
from tests.integration.test_quarantine_store import BODY, hold_one


def write_node_config(folder: Path, database: str) -> Path:
    folder.mkdir()
    path = folder / "sikkermail.toml"
    path.write_text(
        "[server]\nhostname = \"gw.kommune.test\"\n"
        "[spool]\npath = \"var/spool\"\n"
        f"[audit]\ndatabase = \"{database}\"\n"
        "[quarantine]\npath = \"var/quarantine\"\nretention = \"30d\"\n"
    )
    return path


@pytest.fixture
def nodes(tmp_path: Path, fresh_postgres_url: str) -> tuple[Path, Path]:
    """Config files of node A and node B: own folders, one shared PostgreSQL database."""
    return (write_node_config(tmp_path / "node-a", fresh_postgres_url),
            write_node_config(tmp_path / "node-b", fresh_postgres_url))


@pytest.fixture
def audit_b(nodes: tuple[Path, Path]) -> Iterator[AuditStore]:
    store = open_audit(load_config(nodes[1]))
    yield store
    store.close_sync()


def rows_in_quarantine_table(url: str) -> int:
    with psycopg.connect(url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM quarantine").fetchone()
    return int(count)


def spooled(cfg: Config) -> list[str]:
    return Spool(cfg.spool.path).ids(State.INCOMING) if Path(cfg.spool.path).is_dir() else []


def sikkermail(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Run from the config's folder, as an administrator on that node would.
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60, cwd=config.parent)


def test_held_on_one_node_is_listed_shown_and_released_on_the_other(
        nodes: tuple[Path, Path], audit_b: AuditStore, tmp_path: Path, fresh_postgres_url: str) -> None:
    cfg_a, cfg_b = load_config(nodes[0]), load_config(nodes[1])
    assert cfg_a.quarantine.path != cfg_b.quarantine.path and cfg_a.spool.path != cfg_b.spool.path
    qid = hold_one(cfg_a, tmp_path)
    # Nothing of the message on node A's disk: it lives in the shared database.
    assert not Path(cfg_a.quarantine.path).exists()
    assert rows_in_quarantine_table(fresh_postgres_url) == 1

    store_b = QuarantineStore(cfg_b)
    assert [h.id for h in store_b.list_held()] == [qid]
    held = store_b.get(qid)
    assert held.recipients == ("b@klient.test",) and held.level is Level.CONFIDENTIAL
    assert "does not offer STARTTLS" in held.reasons["b@klient.test"]
    assert held.size == len(BODY) and held.folder is None

    done = release(cfg_b, audit_b, qid, reason="recipient fixed TLS", operator="hanne")
    assert isinstance(done, Released)
    assert spooled(cfg_b) == [done.spool_id] and spooled(cfg_a) == []
    spool_b = Spool(cfg_b.spool.path)
    envelope = spool_b.envelope(done.spool_id, State.INCOMING)
    assert envelope.kind is Kind.RELEASE and envelope.origin == qid and envelope.recipients == ("b@klient.test",)
    assert spool_b.message_path(done.spool_id, State.INCOMING).read_bytes() == BODY

    # Gone for both nodes, and gone from the table (a DELETE, not a released flag).
    assert QuarantineStore(cfg_a).list_held() == []
    with pytest.raises(NotHeldError):
        QuarantineStore(cfg_a).get(qid)
    assert rows_in_quarantine_table(fresh_postgres_url) == 0
    actions = audit_b.record("0190000000000ABCDEF0123")["operator_actions"]
    assert [a["action"] for a in actions] == ["quarantine.release", "quarantine.requeued"]


def test_delete_and_purge_on_one_node_remove_the_message_for_the_other(
        nodes: tuple[Path, Path], audit_b: AuditStore, tmp_path: Path, fresh_postgres_url: str) -> None:
    cfg_a, cfg_b = load_config(nodes[0]), load_config(nodes[1])
    deleted, expired, fresh = hold_one(cfg_a, tmp_path), hold_one(cfg_a, tmp_path), hold_one(cfg_a, tmp_path)
    with psycopg.connect(fresh_postgres_url) as conn:
        (meta,) = conn.execute("SELECT meta FROM quarantine WHERE id = %s", (expired,)).fetchone()
        aged = json.loads(meta)
        aged["held_at"] -= 31 * 86400
        conn.execute("UPDATE quarantine SET meta = %s WHERE id = %s", (json.dumps(aged), expired))

    assert delete(cfg_b, audit_b, deleted, reason="sent by mistake", operator="hanne").id == deleted
    assert [h.id for h in purge(cfg_b, audit_b, operator="cron")] == [expired]

    assert [h.id for h in QuarantineStore(cfg_a).list_held()] == [fresh]
    for gone in (deleted, expired):
        with pytest.raises(NotHeldError):
            QuarantineStore(cfg_a).get(gone)
    assert rows_in_quarantine_table(fresh_postgres_url) == 1
    actions = [(a["action"], a["target"]) for a in audit_b.operator_actions()]
    assert actions == [("quarantine.delete", deleted), ("quarantine.purge", expired)]
    # Node A's hourly purge, right after B's, finds nothing more to do and records nothing.
    audit_a = open_audit(cfg_a)
    try:
        assert purge(cfg_a, audit_a, operator="cron") == []
    finally:
        audit_a.close_sync()
    assert len(audit_b.operator_actions()) == 2


class GatedAudit(AuditStore):
    """The real audit store, whose first append waits for the test: a release paused mid-way."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.entered = threading.Event()
        self.go = threading.Event()

    def append_sync(self, event: StoreEvent) -> int:
        if not self.entered.is_set():
            self.entered.set()
            assert self.go.wait(60), "the test never let the first release go on"
        return super().append_sync(event)


def waiting_for_a_row_lock(url: str) -> bool:
    with psycopg.connect(url) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE %s", ("%FROM quarantine%FOR UPDATE%",)).fetchone()
    return int(count) > 0


def test_two_nodes_releasing_the_same_message_at_once_release_it_once(
        nodes: tuple[Path, Path], audit_b: AuditStore, tmp_path: Path, fresh_postgres_url: str) -> None:
    cfg_a, cfg_b = load_config(nodes[0]), load_config(nodes[1])
    qid = hold_one(cfg_a, tmp_path)
    audit_a = GatedAudit(cfg_a)
    outcomes: dict[str, Any] = {}

    def run(name: str, cfg: Config, audit: AuditStore) -> None:
        try:
            outcomes[name] = release(cfg, audit, qid, reason="client asked", operator=name)
        except Exception as exc:  # the outcome is what the test checks
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("node-a", cfg_a, audit_a))
    second = threading.Thread(target=run, args=("node-b", cfg_b, audit_b))
    try:
        first.start()
        assert audit_a.entered.wait(30), "node A's release never reached its audit event"
        # Node A now holds the claim; node B's release must queue behind it in PostgreSQL.
        second.start()
        for _attempt in range(300):
            if waiting_for_a_row_lock(fresh_postgres_url) or not second.is_alive():
                break
            time.sleep(0.1)
        assert waiting_for_a_row_lock(fresh_postgres_url), "node B's release did not wait for node A's"
    finally:
        audit_a.go.set()
        first.join(60)
        second.join(60)
        audit_a.close_sync()
    assert not first.is_alive() and not second.is_alive()

    assert isinstance(outcomes["node-a"], Released), outcomes["node-a"]
    assert isinstance(outcomes["node-b"], NotHeldError), outcomes["node-b"]
    assert spooled(cfg_a) == [outcomes["node-a"].spool_id] and spooled(cfg_b) == []
    releases = [a for a in audit_b.operator_actions() if a["action"] == "quarantine.release"]
    assert [a["operator"] for a in releases] == ["node-a"]
    assert rows_in_quarantine_table(fresh_postgres_url) == 0


def test_cli_on_either_node_acts_on_the_shared_quarantine(
        nodes: tuple[Path, Path], tmp_path: Path, fresh_postgres_url: str) -> None:
    node_a, node_b = nodes
    cfg_a, cfg_b = load_config(node_a), load_config(node_b)
    released, deleted = hold_one(cfg_a, tmp_path), hold_one(cfg_a, tmp_path, Level.SENSITIVE)

    listing = sikkermail(node_b, "quarantine", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert [h["id"] for h in json.loads(listing.stdout)] == [released, deleted]

    shown = sikkermail(node_b, "quarantine", "show", deleted, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["level"] == "sensitive"

    out = sikkermail(node_b, "quarantine", "release", released, "--reason", "TLS fixed", "--operator", "hanne",
                     "--json")
    assert out.returncode == 0, out.stderr
    spool_id = json.loads(out.stdout)["spool_id"]
    assert spooled(cfg_b) == [spool_id] and spooled(cfg_a) == []
    assert b"journal" not in (out.stdout + out.stderr).encode()  # the message never reaches the terminal

    out = sikkermail(node_b, "quarantine", "delete", deleted, "--reason", "sent by mistake", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"id": deleted, "deleted": True}

    listing = sikkermail(node_a, "quarantine", "list", "--json")
    assert listing.returncode == 0 and json.loads(listing.stdout) == []
    again = sikkermail(node_a, "quarantine", "release", released, "--reason", "twice")
    assert again.returncode == 1 and "no held message" in again.stderr
    purged = sikkermail(node_a, "quarantine", "purge", "--json")
    assert purged.returncode == 0 and json.loads(purged.stdout) == {"purged": []}
    assert rows_in_quarantine_table(fresh_postgres_url) == 0
    assert not Path(cfg_a.quarantine.path).exists() and not Path(cfg_b.quarantine.path).exists()


def test_a_message_held_by_one_running_gateway_is_released_and_sent_by_another(
        gateway_factory: Any, tls_lab: Any, fresh_postgres_url: str) -> None:
    plain = tls_lab.start("plain")  # no STARTTLS: a confidential message to it is held
    tls_lab.mail_domain("shared-release.test", [plain])
    extra = {
        "audit": f'database = "{fresh_postgres_url}"',
        "delivery": f'mx_port = {tls_lab.port}\nretry = ["1s"]\nmax_age = "1h"\n'
                    'connect_timeout = "3s"\ndelivery_timeout = "20s"',
        "tls": f'ca_file = "{tls_lab.ca_file}"\nmta_sts_port = {tls_lab.https_port}',
    }
    node_a = gateway_factory(extra, name="node-a").start()
    node_b = gateway_factory(extra, name="node-b").start()
    message = ("From: sagsbehandler@firm.test\r\nTo: klient@shared-release.test\r\nSubject: Sag\r\n"
               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
               "Jens Hansen, CPR-nr. 010190-1234, bor på Strandvejen 12.\r\n").encode()
    assert node_a.send("sagsbehandler@firm.test", ["klient@shared-release.test"], message)[0] == 250

    def held_on_b() -> list[dict[str, Any]]:
        listing = node_b.cli("quarantine", "list", "--json")
        return json.loads(listing.stdout) if listing.returncode == 0 else []

    assert wait_until(lambda: len(held_on_b()) == 1, timeout=30), node_a.log_text()
    (held,) = held_on_b()
    assert held["recipients"] == ["klient@shared-release.test"]
    assert not (node_a.folder / "var" / "quarantine").exists()  # held in PostgreSQL, not on A's disk

    out = node_b.cli("quarantine", "release", held["id"], "--reason", "klienten accepterer risikoen",
                     "--protection", "tls-opportunistic", "--operator", "compliance", "--json")
    assert out.returncode == 0, out.stderr
    spool_id = json.loads(out.stdout)["spool_id"]
    assert wait_until(lambda: len(plain.messages) == 1, timeout=30), node_b.log_text()
    assert b"010190-1234" in plain.messages[0].data  # the held message itself, unchanged
    assert list(node_b.spool.glob(f"*/{spool_id}")) and not list(node_a.spool.glob(f"*/{spool_id}"))
    listing = node_a.cli("quarantine", "list", "--json")
    assert listing.returncode == 0 and json.loads(listing.stdout) == []


def test_two_releases_of_one_message_on_a_single_node_release_it_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder store's claim: a second release waits, gives up with a clear error, and once
    the first is done finds nothing left to release."""
    import gateway.quarantine as quarantine

    cfg = load_config(write_node_config(tmp_path / "solo", "sqlite:///var/audit.db"))
    qid = hold_one(cfg, tmp_path)
    monkeypatch.setattr(quarantine, "CLAIM_WAIT", 0.3)  # the first release is paused: do not wait 30 s
    audit_first, audit_second = GatedAudit(cfg), open_audit(cfg)
    outcome: dict[str, Any] = {}

    def first() -> None:
        outcome["first"] = release(cfg, audit_first, qid, reason="client asked", operator="hanne")

    thread = threading.Thread(target=first)
    try:
        thread.start()
        assert audit_first.entered.wait(30), "the first release never reached its audit event"
        with pytest.raises(quarantine.QuarantineError, match="being released or deleted"):
            release(cfg, audit_second, qid, reason="client asked", operator="jens")
    finally:
        audit_first.go.set()
        thread.join(60)
    try:
        assert isinstance(outcome.get("first"), Released)
        with pytest.raises(NotHeldError):
            release(cfg, audit_second, qid, reason="client asked", operator="jens")
        assert spooled(cfg) == [outcome["first"].spool_id]
        assert [a["operator"] for a in audit_second.operator_actions()
                if a["action"] == "quarantine.release"] == ["hanne"]
        assert not (Path(cfg.quarantine.path) / qid).exists()
    finally:
        audit_first.close_sync()
        audit_second.close_sync()
