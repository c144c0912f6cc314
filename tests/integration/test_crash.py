"""Crash test: SIGKILL the gateway while 500 messages flow; nothing acknowledged is lost.

The client behaves like a real MTA: a message that did not get a 250 is sent
again after the gateway is back. Kill points: right after a 250, while
deliveries are in flight (slow MX), and in the middle of a DATA transfer.
Every message that got a 250 must reach the sink; duplicates (a 250 lost with
the connection, or a delivery whose journal line died with the process) are
counted and printed, never a loss.
"""

from __future__ import annotations

import json
import re
import smtplib
import socket
import threading
import time
from collections import Counter

import pytest

from tests.fixtures.relay_lab import wait_until

TOTAL = 500
SEQ = re.compile(rb"X-Seq: (\d+)")


class Sender(threading.Thread):
    def __init__(self, port: int, up: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.up = up
        self.acknowledged: list[int] = []
        self.retries = 0
        self.milestones: dict[int, threading.Event] = {}
        self.done = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 240
        client: smtplib.SMTP | None = None
        try:
            for seq in range(TOTAL):
                while time.monotonic() < deadline:
                    self.up.wait(timeout=30)
                    try:
                        if client is None:
                            client = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
                            client.ehlo("internal.test")
                        client.sendmail("kontor@firm.test", [f"r{seq % 7}@crash.test"],
                                        f"From: kontor@firm.test\r\nTo: r@crash.test\r\nX-Seq: {seq}\r\n"
                                        f"Subject: besked {seq}\r\n\r\n{'indhold ' * 50}\r\n".encode())
                        self.acknowledged.append(seq)
                        event = self.milestones.get(len(self.acknowledged))
                        if event is not None:
                            event.set()
                        break
                    except (smtplib.SMTPException, OSError):
                        self.retries += 1
                        client = None
                        time.sleep(0.05)
                else:
                    self.error = f"gave up at message {seq}"
                    return
        finally:
            self.done.set()

    def at(self, count: int) -> threading.Event:
        return self.milestones.setdefault(count, threading.Event())


def _half_data(port: int) -> None:
    """Start a transaction and stop in the middle of DATA (the kill comes next)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    reader = sock.makefile("rb")
    reader.readline()
    for command in (b"EHLO internal.test\r\n", b"MAIL FROM:<kontor@firm.test>\r\n",
                    b"RCPT TO:<half@crash.test>\r\n", b"DATA\r\n"):
        sock.sendall(command)
        for _ in range(20):
            if reader.readline()[3:4] != b"-":
                break
    sock.sendall(b"X-Seq: 999999\r\nSubject: never finished\r\n\r\nhalf a body\r\n")
    _half_data.sockets.append(sock)  # type: ignore[attr-defined]


_half_data.sockets = []  # type: ignore[attr-defined]


@pytest.mark.slow
def test_sigkill_at_three_points_loses_no_acknowledged_message(relay_lab, gateway_factory):
    sink = relay_lab.sink("crash")
    relay_lab.domain("crash.test", [sink])
    gw = gateway_factory({"delivery": "mx_port = {MX}\nretry = [\"1s\"]\nmax_age = \"1h\"\n"
                                      "connect_timeout = \"3s\"\ndelivery_timeout = \"20s\"".replace(
                                          "{MX}", str(relay_lab.port))}).start()
    up = threading.Event()
    up.set()
    sender = Sender(gw.port, up)
    after_250, in_delivery, mid_data = sender.at(120), sender.at(260), sender.at(400)
    sender.start()
    kills = []

    # 1. right after a 250
    assert after_250.wait(120)
    up.clear()
    gw.kill()
    kills.append(("after 250", len(sender.acknowledged)))
    gw.start()
    up.set()

    # 2. while deliveries are in flight: the MX takes its time
    sink.delay = 0.3
    assert in_delivery.wait(120)
    time.sleep(0.5)
    up.clear()
    gw.kill()
    in_flight = len(sender.acknowledged) - len(sink.snapshot())
    assert in_flight > 0, "the kill was meant to hit undelivered, acknowledged mail"
    kills.append(("during delivery", len(sender.acknowledged), f"{in_flight} undelivered"))
    sink.delay = 0.0
    gw.start()
    up.set()

    # 3. in the middle of DATA
    assert mid_data.wait(120)
    _half_data(gw.port)
    time.sleep(0.2)
    up.clear()
    gw.kill()
    kills.append(("during DATA", len(sender.acknowledged)))
    gw.start()
    up.set()

    assert sender.done.wait(240) and sender.error is None, sender.error
    acknowledged = set(sender.acknowledged)
    assert len(acknowledged) == TOTAL

    def arrived() -> Counter[int]:
        return Counter(int(m.group(1)) for d in sink.snapshot() if (m := SEQ.search(d.data)))

    wait_until(lambda: acknowledged <= set(arrived()), timeout=120, step=0.5)
    counts = arrived()
    lost = sorted(acknowledged - set(counts))
    duplicates = sum(n - 1 for seq, n in counts.items() if n > 1)
    print(f"\ncrash test: {TOTAL} acknowledged, {len(set(counts) & acknowledged)} delivered, "
          f"{len(lost)} lost, {duplicates} duplicate deliveries, {sender.retries} client retries; kills: {kills}")
    assert lost == []
    assert 999999 not in counts, "a half-sent DATA was delivered"
    assert wait_until(lambda: not gw.ids("incoming") and not gw.ids("active") and not gw.ids("deferred"),
                      timeout=60)
    # The audit survived the kills too: a record per accepted message, every recipient
    # final (a status whose audit event died with the process is reconciled at start).
    records = [json.loads(line) for line in gw.cli("log", "search", "--jsonl").stdout.splitlines() if line.strip()]
    mail = [r for r in records if r["sender"] == "kontor@firm.test"]
    assert len(mail) >= TOTAL
    stuck = [r["id"] for r in mail if any(x["status"] != "delivered" for x in r["recipients"])]
    assert stuck == [], f"audit records not final: {stuck[:5]}"
    assert gw.cli("log", "verify").returncode == 0
    for sock in _half_data.sockets:  # type: ignore[attr-defined]
        sock.close()
