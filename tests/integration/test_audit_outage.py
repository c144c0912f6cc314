"""An audit-database outage loses no record (issue 6: every message leaves a verifiable record).

The gateway keeps delivering while its PostgreSQL audit database is stopped; the
events the store refused wait in the spool's audit outbox and reach the chain,
in order per message, once the database is back — whether the gateway kept
running or was restarted in between. `log verify` then passes.

A PostgreSQL server of its own (not the session's shared one): these tests stop it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.postgres import PG_BIN, _as_postgres, _free_port
from tests.fixtures.relay_lab import wait_until

NEWSLETTER = "Kære alle,\r\n\r\nNæste fredag er der kage i kantinen kl. 14.\r\n"


class StoppablePostgres:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="sikkermail-pg-outage-"))
        self.data = self.base / "data"
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        os.chmod(self.base, 0o700)
        subprocess.run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                                    "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"),
                       check=True, capture_output=True, timeout=120)
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.base} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"),
                                    "-o", options, "-w", "-t", "30", "start"),
                       check=True, capture_output=True, timeout=60)
        assert wait_until(self.reachable, timeout=30)

    def stop(self) -> None:
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30",
                                    "stop"), check=False, capture_output=True, timeout=60)

    def reachable(self) -> bool:
        try:
            psycopg.connect(self.url, connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def audit_db() -> Iterator[StoppablePostgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 is not installed ({PG_BIN})")
    server = StoppablePostgres()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def kantine(relay_lab):
    if not hasattr(relay_lab, "_kantine"):
        relay_lab._kantine = relay_lab.sink("kantine-mx")
        relay_lab.domain("kantine-outage.test", [relay_lab._kantine])
    return relay_lab._kantine


@pytest.fixture
def gw(gateway_factory, audit_db):
    return gateway_factory({"audit": f'database = "{audit_db.url}"'}).start()


def _send(gw, n: int) -> None:
    message = ("From: sagsbehandler@firm.test\r\nTo: alle@kantine-outage.test\r\n"
               f"Subject: Kage {n}\r\nMessage-ID: <kage-{n}@firm.test>\r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + NEWSLETTER)
    assert gw.send("sagsbehandler@firm.test", ["alle@kantine-outage.test"], message.encode())[0] == 250


def _complete_records(gw) -> dict[str, dict]:
    """Audit records that hold the whole story: accepted, classified, decided, delivered."""
    found = gw.cli("log", "search", "--json")
    if found.returncode != 0 or not found.stdout.strip():
        return {}
    complete = {}
    for record in json.loads(found.stdout):
        recipients = record["recipients"]
        if (record["sender"] == "sagsbehandler@firm.test" and record["message_id"]
                and record["classification"] is not None and recipients
                and all(r["action"] == "send" and r["protection"] == "tls-opportunistic"
                        and r["status"] == "delivered" for r in recipients)):
            complete[record["id"]] = record
    return complete


def _outbox(gw) -> list[str]:
    folder = gw.spool / "audit-outbox"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _spooled_mail(gw) -> set[str]:
    """Ids of the mail messages the gateway took (not its own notices)."""
    ids = set()
    for state in ("incoming", "active", "deferred", "done"):
        for message_id in gw.ids(state):
            envelope = json.loads((gw.spool / state / message_id / "envelope.json").read_text())
            if envelope.get("kind", "mail") == "mail":
                ids.add(message_id)
    return ids


def test_records_written_while_the_audit_database_is_down_arrive_once_it_is_back(gw, audit_db, kantine):
    before = len(kantine.snapshot())
    _send(gw, 1)
    assert wait_until(lambda: len(_complete_records(gw)) == 1, timeout=30)

    audit_db.stop()
    assert not audit_db.reachable()
    for n in range(2, 6):
        _send(gw, n)
    # Mail keeps flowing: the spool, not the audit database, is the truth for delivery.
    assert len(kantine.wait_for(before + 5, timeout=60)) == before + 5
    assert wait_until(lambda: len(_outbox(gw)) == 4, timeout=30), _outbox(gw)
    # the background replay meets the stopped database and backs off (it does not give up)
    assert wait_until(lambda: "audit-outbox-replay-deferred" in gw.log_text(), timeout=30)

    audit_db.start()
    assert wait_until(lambda: len(_complete_records(gw)) == 5, timeout=90), gw.log_text()[-3000:]
    assert set(_complete_records(gw)) == _spooled_mail(gw)
    assert wait_until(lambda: _outbox(gw) == [], timeout=30)
    verified = gw.cli("log", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_outbox_is_replayed_when_the_gateway_starts_again(gw, audit_db, kantine):
    before = len(kantine.snapshot())
    audit_db.stop()
    for n in range(1, 4):
        _send(gw, n)
    assert len(kantine.wait_for(before + 3, timeout=60)) == before + 3
    assert wait_until(lambda: len(_outbox(gw)) == 3, timeout=30)
    gw.stop()

    audit_db.start()
    gw.start()
    assert wait_until(lambda: len(_complete_records(gw)) == 3, timeout=90), gw.log_text()[-3000:]
    assert set(_complete_records(gw)) == _spooled_mail(gw)
    assert wait_until(lambda: _outbox(gw) == [], timeout=30)
    verified = gw.cli("log", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
