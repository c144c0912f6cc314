"""SMTP intake processes: same port, same spool, same rules; they stop with the gateway.

With `intake_processes = N > 1` all N are children and the queue process takes no SMTP.
"""

from __future__ import annotations

import json
import os
import subprocess

from tests.fixtures.relay_lab import wait_until


def _children(gw) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"gateway.intake {gw.config_path}"], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def _message(n: int) -> bytes:
    return f"From: a@firm.test\r\nTo: x{n}@intake.test\r\nSubject: {n}\r\n\r\nbesked {n}\r\n".encode()


def test_messages_accepted_by_every_intake_process_are_delivered(relay_lab, gateway_factory):
    sink = relay_lab.sink("intake")
    relay_lab.domain("intake.test", [sink])
    gw = gateway_factory({"server": 'listen = "127.0.0.1:{PORT}"\nallowed_networks = ["127.0.0.0/8"]\n'
                                    'intake_processes = 3'}).start()
    assert wait_until(lambda: len(_children(gw)) == 3, timeout=20)
    assert wait_until(lambda: gw.log_text().count('"intake-listening"') == 3, timeout=20)
    for n in range(30):  # 30 connections: the kernel spreads them over the three listeners
        assert gw.send("a@firm.test", [f"x{n}@intake.test"], _message(n))[0] == 250
    assert len(sink.wait_for(30, timeout=60)) == 30
    accepted_by = {json.loads(line)["pid"] for line in gw.log_text().splitlines()
                   if line.startswith("{") and json.loads(line)["event"] == "accepted"}
    assert len(accepted_by) >= 2, "more than one process took mail"
    assert gw.process.pid not in accepted_by, "the queue process takes no SMTP itself"
    assert accepted_by <= set(_children(gw))
    assert gw.stop() == 0
    assert wait_until(lambda: _children(gw) == [], timeout=20)


def test_intake_processes_exit_when_the_gateway_is_killed(relay_lab, gateway_factory):
    gw = gateway_factory({"server": 'listen = "127.0.0.1:{PORT}"\nallowed_networks = ["127.0.0.0/8"]\n'
                                    'intake_processes = 2'}).start()
    assert wait_until(lambda: len(_children(gw)) == 2, timeout=20)
    child = _children(gw)[0]
    gw.kill()
    # an orphaned intake would accept mail no queue will deliver until the next start
    assert wait_until(lambda: not os.path.exists(f"/proc/{child}") or
                      open(f"/proc/{child}/stat").read().split()[2] == "Z", timeout=20)
