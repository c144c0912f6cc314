"""Encryption in the running gateway: off the event loop, bounded in time, durable.

- While a 25 MB message is being encrypted (its payload exists only under the
  temporary name), the SMTP listener on the same event loop answers EHLO.
- The payload never appears under its final name half-written: it is written as
  .smime-N.eml.tmp and renamed once complete and fsynced.
- An encryption that does not finish within [smime] timeout defers the
  recipients (never a weaker protection) and leaves no payload behind.
"""

from __future__ import annotations

import base64
import json
import os
import smtplib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.relay_lab import wait_until

TO, BCC1, BCC2 = "person@borger.test", "medarbejder@kommune.test", "postkasse@kommune.test"


def _message(size: int) -> bytes:
    head = (b"From: advokat@firm.test\r\nTo: person@borger.test\r\nSubject: [fortrolig] Bilag\r\n"
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSe bilag.\r\n"
            b"--b\r\nContent-Type: application/octet-stream; name=scan.tif\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n")
    body = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return head + body + b"--b--\r\n"


def _gateway(relay_lab: Any, gateway_factory: Any, oces_pki: Any, slapd: Any, tmp_path: Path,
             label: str, smime: str = "") -> tuple[Any, Any, Any]:
    borger = relay_lab.sink(f"borger-{label}")
    kommune = relay_lab.sink(f"kommune-{label}")
    for domain in ("borger.test", "kommune.test"):  # other tests point these at their own sinks
        relay_lab.tls.dns.zone.remove(domain)
    relay_lab.domain("borger.test", [borger])
    relay_lab.domain("kommune.test", [kommune])
    extra = {
        "certdir": f'trust_anchors = ["{oces_pki.trust_anchors}"]\nlocal_store = "{tmp_path / "certs"}"\n'
                   f'[[certdir.ldap]]\nname = "oces"\nurl = "{slapd.url}"\nbase = "{slapd.base}"',
    }
    if smime:
        extra["smime"] = smime
    return gateway_factory(extra).start(), borger, kommune


def _audited(gw: Any) -> dict[str, Any]:
    found = gw.cli("log", "search", "--json")
    records = json.loads(found.stdout) if found.returncode == 0 and found.stdout.strip() else []
    return records[0] if records else {}


def _decided(gw: Any) -> list[dict[str, Any]]:
    """Audit entries whose S/MIME encryption is done."""
    return [e for e in _audited(gw).get("recipients", []) if e.get("smime")]


@pytest.mark.slow
def test_smtp_listener_answers_while_a_25_mb_message_is_encrypted(
    relay_lab: Any, gateway_factory: Any, oces_pki: Any, slapd: Any, tmp_path: Path
) -> None:
    # intake_processes is 1 (the default): the listener runs on the queue's own event loop.
    gw, _, _ = _gateway(relay_lab, gateway_factory, oces_pki, slapd, tmp_path, "busy")
    # To plus two Bcc: three encryptions of 25 MB one after the other.
    assert gw.send("advokat@firm.test", [TO, BCC1, BCC2], _message(25 * 1024 * 1024))[0] == 250

    answered_during = 0
    seen: set[str] = set()
    deadline = time.monotonic() + 120
    next_audit_look = time.monotonic() + 1
    for _ in range(200_000):  # bounded by count and by the deadline
        if time.monotonic() > deadline:
            break
        temporaries = list(gw.spool.glob("*/*/.smime-*.eml.tmp"))
        if not temporaries:
            if time.monotonic() > next_audit_look:  # the CLI is slow: look now and then
                if len(_decided(gw)) == 3:
                    break
                next_audit_look = time.monotonic() + 1
            time.sleep(0.002)
            continue
        tmp = temporaries[0]
        seen.add(tmp.name)
        # Never the final name while the temporary one is being written. (Final first:
        # the temporary name exists only before the final one, so both seen is both at once.)
        final_exists = tmp.with_name(tmp.name[1:].removesuffix(".tmp")).exists()
        assert not (final_exists and tmp.exists())
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as client:
            code, _ = client.ehlo("probe.test")
        assert code == 250
        if tmp.exists():  # still encrypting after the listener answered: the loop was free
            answered_during += 1
    assert seen, "never saw an encryption in progress"
    assert answered_during >= 1
    # Three encryptions, one per recipient. (The lab's sinks refuse anything above
    # aiosmtpd's 32 MiB default, so the 34 MB S/MIME messages go no further.)
    assert wait_until(lambda: len(_decided(gw)) == 3, timeout=120)
    assert all(e["protection"] == "smime" and e["smime"]["recipient_infos"] == 1 for e in _decided(gw))
    assert not list(gw.spool.glob("*/*/.smime-*.tmp"))


def test_encryption_beyond_the_timeout_defers_and_leaves_no_payload(
    relay_lab: Any, gateway_factory: Any, oces_pki: Any, slapd: Any, tmp_path: Path
) -> None:
    gw, borger, _ = _gateway(relay_lab, gateway_factory, oces_pki, slapd, tmp_path, "slow",
                             smime='timeout = "1ms"\ntimeout_per_mb = "0s"')
    assert gw.send("advokat@firm.test", [TO], _message(5 * 1024 * 1024))[0] == 250

    def deferred() -> dict[str, Any] | None:
        entries = _audited(gw).get("recipients", [])
        return next((e for e in entries if e["status"] == "deferred"), None)

    assert wait_until(lambda: deferred() is not None, timeout=60)
    entry = deferred()
    assert entry is not None and entry["protection"] is None and entry["action"] == "defer"
    assert "encryption failed: no result within" in entry["reason"]
    assert "[smime] timeout" in entry["reason"]
    # The abandoned thread stops and removes its temporary file; nothing went out.
    assert wait_until(lambda: not list(gw.spool.glob("*/*/.smime-*")), timeout=30)
    assert not list(gw.spool.glob("*/*/smime-*.eml"))
    assert borger.snapshot() == []
    assert '"smime-failed"' in gw.log_text()
