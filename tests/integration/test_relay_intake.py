"""SMTP intake under trouble: internal errors and a full disk answer 4xx over real SMTP,
so the sending server retries; nothing half-written is ever delivered; every log
line the gateway writes is JSON."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import eventlog
from gateway.config import load_config
from gateway.metrics import Metrics
from gateway.smtp_in import RelayHandler, start_smtp
from gateway.spool import Envelope, Spool, State
from tests.fixtures.relay_lab import free_port


def _message(to: str, mid: str, body: bytes = b"Hej.\r\n") -> bytes:
    return (f"From: anne@firm.test\r\nTo: {to}\r\nSubject: intake {mid}\r\n"
            f"Message-ID: <{mid}@firm.test>\r\n\r\n").encode() + body


class _Intake:
    """The real RelayHandler behind the real aiosmtpd server, in a thread's own loop."""

    def __init__(self, handler: RelayHandler, cfg_listen: tuple[str, int], server: asyncio.Server,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.handler, self.port, self.server, self.loop = handler, cfg_listen[1], server, loop


@pytest.fixture
def json_log(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The gateway's log set-up in this process (after capfd: it writes to the captured
    stderr), undone afterwards."""
    import logging
    import sys

    root = logging.getLogger()
    saved = (list(root.handlers), root.level, sys.excepthook, threading.excepthook)
    eventlog.setup()
    try:
        yield
    finally:
        root.handlers[:], _, sys.excepthook, threading.excepthook = saved[0], None, saved[2], saved[3]
        root.setLevel(saved[1])
        logging.captureWarnings(False)


@pytest.fixture
def intake_with_bad_hostname(tmp_path: Path, json_log: None) -> Iterator[_Intake]:
    # A configuration that was never through check-config (built in code, or from
    # before the hostname check): its non-ASCII hostname makes building the Received
    # header fail inside handle_DATA, a real internal error on every message.
    (tmp_path / "sikkermail.toml").write_text(
        f'[server]\nlisten = "127.0.0.1:{free_port()}"\nallowed_networks = ["127.0.0.1/32"]\n')
    cfg = load_config(tmp_path / "sikkermail.toml")
    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, hostname="gæt.example.dk"))
    spool = Spool(cfg.spool.path)
    spool.ensure()
    accepted: list[Envelope] = []
    handler = RelayHandler(cfg, spool, Metrics(), accepted.append)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start_smtp(cfg, handler), loop).result(10)
    try:
        yield _Intake(handler, cfg.listen, server, loop)
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert accepted == []


def test_internal_error_in_data_answers_451_not_500(intake_with_bad_hostname, tmp_path, capfd):
    with smtplib.SMTP("127.0.0.1", intake_with_bad_hostname.port, timeout=30) as client:
        client.ehlo("internal.test")
        assert client.mail("anne@firm.test")[0] == 250
        assert client.rcpt("bob@partner.test")[0] == 250
        code, text = client.data(_message("bob@partner.test", "e1"))
        assert (code, text.decode()) == (451, "4.3.0 Temporary local problem, try again later")
        # the session survives: the client may retry at once or later
        assert client.noop()[0] == 250
    spool = Spool(tmp_path / "var" / "spool")
    assert spool.ids(State.INCOMING) == [] and spool.ids(State.TMP) == []
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if "smtp-internal-error" in line]
    assert len(lines) == 1
    assert lines[0]["id"] and lines[0]["error"] == "UnicodeEncodeError"
    assert "Traceback" in lines[0]["traceback"] and "Hej." not in err
