"""SMTP intake under trouble: internal errors and a full disk answer 4xx over real SMTP,
so the sending server retries; nothing half-written is ever delivered; every log
line the gateway writes is JSON."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import smtplib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import eventlog
from gateway.config import load_config
from gateway.metrics import Metrics
from gateway.smtp_in import RelayHandler, start_smtp
from gateway.spool import Envelope, Spool, State
from tests.fixtures.relay_lab import free_port, wait_until


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


@contextlib.contextmanager
def _tiny_tmpfs(folder: Path, size: str = "2m") -> Iterator[Path]:
    """A real small file system (we run as root in CI). No mount, no test: fail, never skip."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
                             capture_output=True, text=True, timeout=30)
    assert mounted.returncode == 0, f"cannot mount a tmpfs for the disk-full test: {mounted.stderr}"
    try:
        yield folder
    finally:
        unmounted = subprocess.run(["umount", str(folder)], capture_output=True, text=True, timeout=30)
        if unmounted.returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def _fill(folder: Path, leave: int) -> Path:
    """A file taking all but `leave` bytes of the file system."""
    stat = os.statvfs(folder)
    filler = folder / "filler"
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler


def test_disk_full_answers_452_over_smtp_and_recovers_when_space_is_freed(relay_lab, gateway_factory):
    sink = relay_lab.sink("intake-full")
    relay_lab.domain("intakefull.test", [sink])
    gw = gateway_factory()
    big = _message("bo@intakefull.test", "full-1", (b"z" * 998 + b"\r\n") * 600)  # ~600KB
    with _tiny_tmpfs(gw.spool):
        try:
            gw.start()
            filler = _fill(gw.spool, leave=200 * 1024)
            code, text = gw.send("anne@firm.test", ["bo@intakefull.test"], big)
            assert (code, text) == (452, "4.3.1 Insufficient system storage")
            assert gw.ids("tmp") == [] and gw.ids("incoming") == [] and gw.ids("active") == []
            filler.unlink()
            retried = big.replace(b"full-1", b"full-2")
            code, text = gw.send("anne@firm.test", ["bo@intakefull.test"], retried)
            assert code == 250, text
            got = sink.wait_for(1)
            assert wait_until(lambda: len(gw.ids("done")) == 1 and not gw.ids("active") and not gw.ids("incoming"))
            # exactly the one that fitted, whole; never a trace of the refused one
            assert len(sink.snapshot()) == 1
            assert got[0].data.endswith(retried.split(b"\r\n\r\n", 1)[1])
            assert b"full-1" not in got[0].data
            events = [json.loads(line) for line in gw.log_text().splitlines()]
            assert any(e["event"] == "spool-full" for e in events)
        finally:
            gw.kill()


def test_every_log_line_is_json_and_message_events_carry_the_id(relay_lab, gateway_factory):
    sink = relay_lab.sink("intake-log")
    relay_lab.domain("intakelog.test", [sink])
    gw = gateway_factory().start()
    ids = []
    for n in range(2):
        code, text = gw.send("anne@firm.test", ["bo@intakelog.test"], _message("bo@intakelog.test", f"log-{n}"))
        assert code == 250, text
        ids.append(text.rsplit(" ", 1)[1])
    assert len(sink.wait_for(2)) == 2
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as client:
        client.ehlo("internal.test")
        # a command aiosmtpd does not know: aiosmtpd itself logs a warning about it
        assert client.docmd("XYZZY")[0] == 500
        client.mail("anne@firm.test")
        client.rcpt("bo@intakelog.test")
        code, _ = client.data(b"Subject: bare\r\n\r\nline one\nline two\r\n")
        assert code == 554
    # a client outside allowed_networks (127.0.0.1/32 in the lab)
    with smtplib.SMTP("127.0.0.1", gw.port, timeout=30, source_address=("127.0.0.2", 0)) as client:
        client.ehlo("outside.test")
        assert client.mail("anne@firm.test")[0] == 550
    assert wait_until(lambda: len(gw.ids("done")) == 2)
    assert gw.stop() == 0
    lines = [line for line in gw.log_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line, ours or a library's
    assert all({"ts", "level", "event"} <= set(e) for e in events)
    names = {e["event"] for e in events}
    assert {"listening", "rejected-bare-line-ending", "relay-denied", "stopped"} <= names
    third_party = [e for e in events if e.get("logger") == "mail.log"]
    assert third_party and any("XYZZY" in e["message"] for e in third_party)
    for message_id in ids:
        mine = {e["event"] for e in events if e.get("id") == message_id}
        assert {"accepted", "classified", "delivered", "done"} <= mine, mine
    assert not any("line one" in line for line in lines)


def _raw(port: int, commands: list[bytes]) -> list[bytes]:
    """SMTP by hand (smtplib would mend our lines), one reply per command, bounded."""
    import socket

    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")
        for command in [b"", *commands]:
            if command:
                sock.sendall(command)
            reply = b""
            for _ in range(50):
                line = reader.readline()
                reply += line
                if len(line) < 4 or line[3:4] != b"-":
                    break
            replies.append(reply)
    return replies


@pytest.mark.parametrize("long_line,expected", [
    (999, b"554 5.6.0 Message rejected: header line longer than 998 octets (RFC 5322 2.1.1)"),
    (1500, b"500 Line too long"),  # aiosmtpd itself, RFC 5321 4.5.3.1.6
])
def test_10000_line_header_with_one_overlong_line_gets_a_clear_5xx(relay_lab, gateway_factory, long_line, expected):
    sink = relay_lab.sink(f"intake-long-{long_line}")
    domain = relay_lab.domain(f"intakelong{long_line}.test", [sink])
    gw = gateway_factory().start()
    lines = [b"X-H%05d: v\r\n" % i for i in range(10_000)]  # ~140KB: under max_header_size
    lines[250] = b"X-Long: " + b"x" * (long_line - len(b"X-Long: ")) + b"\r\n"
    header = b"".join(lines)
    replies = _raw(gw.port, [b"EHLO internal.test\r\n", b"MAIL FROM:<anne@firm.test>\r\n",
                             b"RCPT TO:<bo@%s>\r\n" % domain.encode(), b"DATA\r\n",
                             header + b"\r\nbody\r\n.\r\n", b"QUIT\r\n"])
    assert replies[4].startswith(b"354")
    assert replies[5].startswith(expected), replies[5]
    assert gw.ids("tmp") == [] and gw.ids("incoming") == [] and gw.ids("active") == []
    # the gateway still serves, and the refused message never arrives
    assert gw.send("anne@firm.test", [f"ok@{domain}"], _message(f"ok@{domain}", "after-long"))[0] == 250
    got = sink.wait_for(1)
    assert len(got) == 1 and got[0].rcpt_tos == (f"ok@{domain}",)
