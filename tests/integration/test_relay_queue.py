"""The queue and delivery half of the relay core, end to end: the real gateway process,
real DNS, real MX sinks (and tarpits). Concurrency limits, the pipeline bound, resuming
from a journal written before a crash, backoff for messages the pipeline cannot take,
the delivery deadline, flush, expiry bounces, draining on SIGTERM, opportunistic TLS."""

from __future__ import annotations

import email
import email.policy
import json
import time
from typing import Any

import pytest

from gateway.journal import classification_record
from gateway.spool import Envelope, Spool, State, new_id
from policy.model import Classification, Level
from tests.fixtures.relay_lab import wait_until

MESSAGE = (
    "From: Anne <{sender}>\r\nTo: {to}\r\nSubject: Mødeindkaldelse\r\n"
    "Message-ID: <{mid}@firm.test>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Hej, vi ses på torsdag i mødelokale Æ.\r\n"
)


def _message(to: str, mid: str = "m1", sender: str = "anne@firm.test") -> bytes:
    return MESSAGE.format(to=to, mid=mid, sender=sender).encode()


def _delivery(relay_lab: Any, **keys: str | int) -> str:
    """A whole [delivery] section: the lab's MX port and short retries, plus `keys`."""
    values: dict[str, str | int] = {"mx_port": relay_lab.port, "retry": '["1s"]', "max_age": '"1h"',
                                    "connect_timeout": '"3s"', "delivery_timeout": '"20s"'}
    values.update(keys)
    return "\n".join(f"{k} = {v}" for k, v in values.items())


def _log(gw: Any) -> list[dict[str, Any]]:
    lines = []
    for line in gw.log_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def _from(sink: Any, sender: str) -> list[Any]:
    """What `sink` got addressed to `sender` (DSNs and notices come back to the sender)."""
    return [m for m in sink.snapshot() if m.rcpt_tos == (sender,)]


@pytest.fixture
def sender_domain(relay_lab):
    """The internal senders' domain: DSNs and notices go back there."""
    if not hasattr(relay_lab, "_firm"):
        relay_lab._firm = relay_lab.sink("firm-mx")
        relay_lab.domain("firm.test", [relay_lab._firm])
    return relay_lab._firm


def _put_in_spool(gw: Any, sender: str, recipients: list[str], data: bytes, **envelope: Any) -> str:
    """A message as the intake leaves it in incoming/ (the gateway need not be running)."""
    spool = Spool(gw.spool)
    spool.ensure()
    return spool.accept(Envelope(new_id(), sender, tuple(recipients), time.time(), client="127.0.0.1",
                                 **envelope), data)


# -- concurrency ----------------------------------------------------------------------


def test_global_concurrency_limit_bounds_sessions_across_domains(relay_lab, gateway_factory):
    # One MX serves three domains: the per-domain limit (10) never bites, the global one (2) must.
    sink = relay_lab.sink("global-limit")
    sink.delay = 0.5
    for n in range(3):
        relay_lab.domain(f"global{n}.test", [sink])
    gw = gateway_factory({"delivery": _delivery(relay_lab, max_concurrency=2, max_per_domain=10)}).start()
    for n in range(9):
        rcpt = f"r{n}@global{n % 3}.test"
        assert gw.send("anne@firm.test", [rcpt], _message(rcpt, f"g{n}"))[0] == 250
    assert len(sink.wait_for(9, timeout=60)) == 9
    assert sink.max_in_data == 2


def test_a_slow_domain_does_not_hold_the_global_slots_other_domains_need(relay_lab, gateway_factory):
    slow = relay_lab.sink("slow-domain")
    slow.delay = 5.0
    fast = relay_lab.sink("fast-domain")
    relay_lab.domain("slowdom.test", [slow])
    relay_lab.domain("fastdom.test", [fast])
    # connect_timeout is also aiosmtplib's per-command timeout: longer than the slow DATA.
    gw = gateway_factory({"delivery": _delivery(relay_lab, max_concurrency=2, max_per_domain=1,
                                                connect_timeout='"30s"')}).start()
    for n in range(3):
        assert gw.send("anne@firm.test", [f"s{n}@slowdom.test"], _message(f"s{n}@slowdom.test", f"s{n}"))[0] == 250
    # The first is inside DATA at the slow MX; the other two wait for the domain's one slot.
    assert wait_until(lambda: slow.in_data == 1 and not gw.ids("incoming") and len(gw.ids("active")) == 3)
    assert gw.send("anne@firm.test", ["f@fastdom.test"], _message("f@fastdom.test", "f"))[0] == 250
    assert len(fast.wait_for(1, timeout=30)) == 1
    # Delivered while the slow domain's first message was still in DATA, not after two of them.
    assert slow.snapshot() == []
    assert slow.max_in_data == 1


# -- the pipeline bound -----------------------------------------------------------------


def test_a_backlog_goes_through_the_pipeline_a_few_messages_at_a_time(relay_lab, gateway_factory):
    sink = relay_lab.sink("backlog")
    relay_lab.domain("backlog.test", [sink])
    gw = gateway_factory({"delivery": _delivery(relay_lab, max_in_pipeline=3)})
    count = 40
    for n in range(count):
        _put_in_spool(gw, "anne@firm.test", [f"r{n}@backlog.test"], _message(f"r{n}@backlog.test", f"b{n}"))
    gw.start()
    assert len(sink.wait_for(count, timeout=120)) == count
    seen = [line["in_pipeline"] for line in _log(gw) if line["event"] == "classified"]
    assert len(seen) == count
    assert max(seen) == 3  # the bound is reached (the backlog is real) and never passed


# -- resuming from the journal ---------------------------------------------------------


def test_decided_hold_and_block_without_status_lines_are_settled_once_on_resume(
        relay_lab, gateway_factory, sender_domain):
    # The state a crash leaves between the "decided" lines and their status lines.
    sender = "resume-hold@firm.test"
    rcpts = ["held@resumed.test", "blocked@resumed.test"]
    gw = gateway_factory()
    message_id = _put_in_spool(gw, sender, rcpts, _message(", ".join(rcpts), "resume", sender))
    spool = Spool(gw.spool)
    now = time.time()
    spool.append_many(message_id, State.INCOMING, [
        classification_record(Classification(Level.CONFIDENTIAL, marking="[fortrolig]")),
        {"e": "decided", "rcpt": rcpts[0], "action": "quarantine", "protection": None, "level": "confidential",
         "rule": "level:confidential", "reason": "no certificate; TLS grade too low", "payload": None,
         "at": now, "cipher": None},
        {"e": "decided", "rcpt": rcpts[1], "action": "block", "protection": None, "level": "confidential",
         "rule": "recipient:resumed.test", "reason": "policy blocks this recipient", "payload": None,
         "at": now, "cipher": None},
    ])
    spool.move(message_id, State.INCOMING, State.ACTIVE)
    gw.start()
    assert wait_until(lambda: message_id in gw.ids("done"), timeout=30)
    shown = json.loads(gw.cli("queue", "show", message_id, "--json").stdout)
    assert {r["address"]: r["status"] for r in shown["recipients"]} == {rcpts[0]: "quarantined",
                                                                          rcpts[1]: "blocked"}
    assert wait_until(lambda: len(_from(sender_domain, sender)) == 2, timeout=30)
    kinds = sorted(email.message_from_bytes(m.data)["X-Sikkermail-Notice"].split(";")[0]
                   for m in _from(sender_domain, sender))
    assert kinds == ["block", "quarantine"]
    # Once: a restart finds nothing more to hold or tell.
    assert gw.stop() == 0
    gw.start()
    assert wait_until(lambda: gw.log_text().count('"queue-started"') == 2)
    time.sleep(2)  # room for a wrong second hold or notice to show itself
    held = json.loads(gw.cli("quarantine", "list", "--json").stdout)
    assert [h["recipients"] for h in held if h["audit_id"] == message_id] == [[rcpts[0]]]
    assert len(_from(sender_domain, sender)) == 2


# -- a message the pipeline cannot take -------------------------------------------------


def test_a_message_the_pipeline_fails_on_backs_off_and_is_quarantined_at_max_age(
        relay_lab, gateway_factory, sender_domain):
    sink = relay_lab.sink("never-reached")
    relay_lab.domain("unprocessable.test", [sink])
    sender = "unprocessable@firm.test"
    gw = gateway_factory({"delivery": _delivery(relay_lab, retry='["1s", "2s", "4s"]', max_age='"15s"')})
    # An envelope this version cannot act on (a protection it does not know, as a spool
    # written by a newer version would have): deciding raises for this message only.
    message_id = _put_in_spool(gw, sender, ["x@unprocessable.test"], _message("x@unprocessable.test", "u", sender),
                               kind="release", override_protection="carrier-pigeon", origin="Q1")
    gw.start()
    assert gw.send("anne@firm.test", ["ok@unprocessable.test"], _message("ok@unprocessable.test", "ok"))[0] == 250
    assert wait_until(lambda: gw.ids("done").count(message_id) == 1, timeout=40)
    retries = [line for line in _log(gw) if line["event"] == "pipeline-retry" and line["id"] == message_id]
    failures = [line for line in _log(gw) if line["event"] == "message-handling-failed" and line["id"] == message_id]
    # Backoff on the retry schedule (1s, 2s, 4s, 4s, ... cut at max_age), not once a second.
    delays = [line["delay"] for line in retries]
    assert 3 <= len(retries) <= 6, delays
    assert [round(d) for d in delays[:3]] == [1, 2, 4]
    assert len(failures) == len(retries) + 1  # the last failure, past max_age, is the hold
    # Held, never sent: the other message to the same domain went out, this one did not.
    assert [m.rcpt_tos for m in sink.wait_for(1)] == [("ok@unprocessable.test",)]
    shown = json.loads(gw.cli("queue", "show", message_id, "--json").stdout)
    assert shown["recipients"][0]["status"] == "quarantined"
    held = [h for h in json.loads(gw.cli("quarantine", "list", "--json").stdout) if h["audit_id"] == message_id]
    assert len(held) == 1 and held[0]["level"] == "confidential"
    assert wait_until(lambda: len(_from(sender_domain, sender)) == 1, timeout=30)


# -- the delivery deadline --------------------------------------------------------------


def test_the_delivery_deadline_covers_every_mx_host_of_the_domain(relay_lab, gateway_factory):
    first, second = relay_lab.tarpit("tarpit-a"), relay_lab.tarpit("tarpit-b")
    relay_lab.domain("tarpits.test", [first, second])
    # Each host alone would hang for the whole connect timeout; the deadline is far shorter.
    gw = gateway_factory({"delivery": _delivery(relay_lab, retry='["1h"]', connect_timeout='"120s"',
                                                delivery_timeout='"3s"')}).start()
    assert gw.send("anne@firm.test", ["x@tarpits.test"], _message("x@tarpits.test"))[0] == 250
    assert wait_until(lambda: len(gw.ids("deferred")) == 1, timeout=60)
    shown = json.loads(gw.cli("queue", "show", gw.ids("deferred")[0], "--json").stdout)
    response = shown["recipients"][0]["response"]
    assert shown["recipients"][0]["status"] == "deferred"
    assert response.startswith("451 4.4.1") and "deadline of 3s" in response and first.name in response
    # The deadline ran out at the first host: the second was never given another 3 seconds.
    assert first.connections == 1 and second.connections == 0


# -- flush, expiry, draining, opportunistic TLS -------------------------------------------


def test_queue_flush_retries_a_deferred_message_at_once(relay_lab, gateway_factory):
    sink = relay_lab.sink("flushed")
    relay_lab.tls.dns.zone.fail("flush.test")  # SERVFAIL: temporary, the message waits
    gw = gateway_factory({"delivery": _delivery(relay_lab, retry='["1h"]')}).start()
    assert gw.send("anne@firm.test", ["x@flush.test"], _message("x@flush.test"))[0] == 250
    assert wait_until(lambda: len(gw.ids("deferred")) == 1, timeout=30)
    relay_lab.tls.dns.zone.remove("flush.test")
    relay_lab.domain("flush.test", [sink])
    time.sleep(2)
    assert sink.snapshot() == []  # nothing retries it before the hour is up ...
    flushed = gw.cli("queue", "flush")
    assert flushed.returncode == 0 and "1 deferred" in flushed.stdout
    assert len(sink.wait_for(1, timeout=20)) == 1  # ... but flush does
    assert wait_until(lambda: not gw.ids("deferred") and not gw.ids("active"))


def test_public_mail_is_bounced_at_max_age_with_a_danish_and_english_dsn(relay_lab, gateway_factory, sender_domain):
    sink = relay_lab.sink("always-busy")
    relay_lab.domain("busy.test", [sink])
    sender = "expiry@firm.test"
    rcpt = "temp-always@busy.test"  # the sink answers 451 4.2.1 every time
    gw = gateway_factory({"delivery": _delivery(relay_lab, retry='["1s"]', max_age='"5s"')}).start()
    assert gw.send(sender, [rcpt], _message(rcpt, "expiry", sender))[0] == 250
    assert wait_until(lambda: len(_from(sender_domain, sender)) == 1, timeout=40)
    returned = _from(sender_domain, sender)[0]
    assert returned.mail_from in ("", "<>")  # RFC 5321 §4.5.5: a DSN has the null sender
    dsn = email.message_from_bytes(returned.data, policy=email.policy.default)
    # RFC 3464 §2 / RFC 6522: multipart/report; report-type=delivery-status, human part first
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    human, status, headers = dsn.get_payload()
    assert human.get_content_type() == "text/plain"
    text = human.get_content()
    assert "kunne ikke leveres" in text and "could not be delivered" in text
    assert text.count(rcpt) == 2  # named in the Danish and in the English half
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; gateway.relaylab.test"
    assert per_message["Arrival-Date"]
    assert per_recipient["Final-Recipient"] == f"rfc822; {rcpt}"
    assert per_recipient["Action"] == "failed"
    # RFC 3463 X.4.7: report the problem actually found rather than "time expired"
    assert per_recipient["Status"] == "4.2.1"
    assert per_recipient["Diagnostic-Code"].startswith("smtp; 451 4.2.1 mailbox busy")
    assert headers.get_content_type() == "text/rfc822-headers"
    assert b"Message-ID: <expiry@firm.test>" in returned.data
    assert "mødelokale".encode() not in returned.data and "mødelokale" not in text  # never the body
    finished = [json.loads(gw.cli("queue", "show", i, "--json").stdout) for i in gw.ids("done")]
    mine = [m for m in finished if m["sender"] == sender]
    assert len(mine) == 1 and mine[0]["recipients"][0]["status"] == "bounced"
    assert sink.snapshot() == []


def test_sigterm_lets_an_inflight_delivery_finish_before_exit(relay_lab, gateway_factory):
    sink = relay_lab.sink("slow-drain")
    sink.delay = 3.0
    relay_lab.domain("drain.test", [sink])
    gw = gateway_factory({"delivery": _delivery(relay_lab, connect_timeout='"30s"')}).start()
    data = _message("x@drain.test", "drain")
    assert gw.send("anne@firm.test", ["x@drain.test"], data)[0] == 250
    assert wait_until(lambda: sink.in_data == 1, timeout=30)  # inside DATA at the slow MX
    assert gw.stop() == 0  # SIGTERM while the MX is still thinking
    assert "stopped" in gw.log_text()
    got = sink.snapshot()
    assert len(got) == 1 and got[0].data.endswith(data.split(b"\r\n\r\n", 1)[1])
    [done] = gw.ids("done")
    assert gw.ids("active") == [] and gw.ids("deferred") == []
    shown = json.loads(gw.cli("queue", "show", done, "--json").stdout)
    assert shown["recipients"][0]["status"] == "delivered"


def test_public_mail_uses_starttls_when_offered(relay_lab, tls_lab, gateway_factory):
    server = tls_lab.start("tls12")
    tls_lab.mail_domain("tls-offered.test", [server])
    gw = gateway_factory().start()
    assert gw.send("anne@firm.test", ["x@tls-offered.test"], _message("x@tls-offered.test"))[0] == 250
    assert wait_until(lambda: len(server.messages) == 1, timeout=30)
    assert server.messages[0].tls and server.messages[0].tls_version == "TLSv1.2"
    assert wait_until(lambda: len(gw.ids("done")) == 1)
    journal = (gw.spool / "done" / gw.ids("done")[0] / "journal").read_text()
    assert '"version": "TLSv1.2"' in journal


def test_starttls_refused_with_454_falls_back_to_plaintext_for_public_mail_only(relay_lab, tls_lab, gateway_factory):
    server = tls_lab.start("tls454")
    tls_lab.mail_domain("tls-refused.test", [server])
    gw = gateway_factory().start()
    assert gw.send("anne@firm.test", ["x@tls-refused.test"], _message("x@tls-refused.test", "pub"))[0] == 250
    assert wait_until(lambda: len(server.messages) == 1, timeout=30)
    assert not server.messages[0].tls  # RFC 7435: opportunistic, so clear rather than not at all
    marked = _message("y@tls-refused.test", "conf").replace(b"Subject: ", b"Subject: [fortrolig] ")
    assert gw.send("anne@firm.test", ["y@tls-refused.test"], marked)[0] == 250
    # The probe cannot establish TLS (454 is temporary): the confidential message waits for
    # TLS that works (and would be held at max_age); retried, it is never sent in clear.
    def attempts() -> int:
        deferred = gw.ids("deferred")
        return json.loads(gw.cli("queue", "show", deferred[0], "--json").stdout)["attempts"] if deferred else 0

    assert wait_until(lambda: attempts() >= 3, timeout=30)
    assert len(server.messages) == 1 and server.mail_commands == 1


def test_a_finished_message_a_power_loss_put_back_in_incoming_is_finished_not_resent(relay_lab, gateway_factory):
    # finish() drops the body, then renames to done/; the rename is not fsynced, so a
    # power loss may show the folder where it was last durably named, without its body.
    sink = relay_lab.sink("already-delivered")
    relay_lab.domain("finished.test", [sink])
    gw = gateway_factory()
    message_id = _put_in_spool(gw, "anne@firm.test", ["x@finished.test"], _message("x@finished.test", "fin"))
    spool = Spool(gw.spool)
    spool.append_many(message_id, State.INCOMING, [
        classification_record(Classification(Level.PUBLIC)),
        {"e": "decided", "rcpt": "x@finished.test", "action": "send", "protection": "tls-opportunistic",
         "level": "public", "rule": "level:public", "reason": "", "payload": "message", "at": time.time()},
        {"e": "status", "rcpt": "x@finished.test", "status": "delivered", "response": "250 2.0.0 ok",
         "at": time.time()},
    ])
    (spool.dir(State.INCOMING, message_id) / "message").unlink()
    gw.start()
    assert wait_until(lambda: message_id in gw.ids("done"), timeout=30)
    time.sleep(1.5)  # one scan of incoming/ later: still nothing retried or failed
    assert gw.ids("incoming") == [] and sink.snapshot() == []
    assert not [line for line in _log(gw) if line["event"] == "message-handling-failed"]


def test_a_hold_interrupted_after_the_copy_is_not_held_twice(relay_lab, gateway_factory, sender_domain):
    from gateway.config import load_config
    from gateway.quarantine import QuarantineStore
    from policy.model import Action, Decision, Step

    sender = "hold-twice@firm.test"
    rcpt = "held@interrupted.test"
    gw = gateway_factory()
    message_id = _put_in_spool(gw, sender, [rcpt], _message(rcpt, "twice", sender))
    spool = Spool(gw.spool)
    classification = Classification(Level.CONFIDENTIAL, marking="[fortrolig]")
    decision = Decision(rcpt, Level.CONFIDENTIAL, Action.QUARANTINE, None, "level:confidential",
                        (Step(None, False, "no certificate; TLS grade too low"),))
    # The crash came after the held copy was made and before its status line.
    quarantine_id = "Q" + new_id()
    spool.append_many(message_id, State.INCOMING, [
        classification_record(classification),
        {"e": "decided", "rcpt": rcpt, "action": "quarantine", "protection": None, "level": "confidential",
         "rule": "level:confidential", "reason": decision.reason, "payload": None, "at": time.time()},
        {"e": "holding", "quarantine_id": quarantine_id, "rcpts": [rcpt], "at": time.time()},
    ])
    spool.move(message_id, State.INCOMING, State.ACTIVE)
    envelope = spool.envelope(message_id, State.ACTIVE)
    QuarantineStore(load_config(gw.config_path)).hold(envelope, spool.message_path(message_id, State.ACTIVE),
                                                      [decision], classification, quarantine_id)
    gw.start()
    assert wait_until(lambda: message_id in gw.ids("done"), timeout=30)
    held = [h for h in json.loads(gw.cli("quarantine", "list", "--json").stdout) if h["audit_id"] == message_id]
    assert [h["id"] for h in held] == [quarantine_id]
    shown = json.loads(gw.cli("queue", "show", message_id, "--json").stdout)
    assert shown["recipients"][0]["status"] == "quarantined"
    assert wait_until(lambda: len(_from(sender_domain, sender)) == 1, timeout=30)
    notice = email.message_from_bytes(_from(sender_domain, sender)[0].data)
    assert notice["X-Sikkermail-Notice"] == f"quarantine; quarantine-id={quarantine_id}"


# -- messages in active/ that cannot be handled ----------------------------------------


def _put_in_active(gw: Any, sender: str, recipients: list[str], data: bytes) -> str:
    """A message already past the pipeline, as a crash or another node's spool may leave it."""
    spool = Spool(gw.spool)
    spool.ensure()
    message_id = spool.accept(Envelope(new_id(), sender, tuple(recipients), time.time(), client="127.0.0.1"), data)
    spool.move(message_id, State.INCOMING, State.ACTIVE)
    return message_id


def test_an_active_message_whose_attempt_fails_backs_off_on_the_retry_schedule(relay_lab, gateway_factory):
    sink = relay_lab.sink("unreadable")
    relay_lab.domain("unreadable.test", [sink])
    gw = gateway_factory({"delivery": _delivery(relay_lab, retry='["1s", "2s", "4s"]')})
    message_id = _put_in_active(gw, "anne@firm.test", ["x@unreadable.test"], _message("x@unreadable.test"))
    envelope = Spool(gw.spool).dir(State.ACTIVE, message_id) / "envelope.json"
    envelope.write_text("{not json")  # every attempt raises reading it
    gw.start()
    started = time.monotonic()
    assert wait_until(lambda: sum(1 for line in _log(gw) if line["event"] == "attempt-retry"
                                  and line["id"] == message_id) >= 3, timeout=30)
    elapsed = time.monotonic() - started
    retries = [line for line in _log(gw) if line["event"] == "attempt-retry" and line["id"] == message_id]
    # 1 s, 2 s, 4 s: three retries take several seconds, where once a second they took two
    assert [line["delay"] for line in retries[:3]] == [1.0, 2.0, 4.0]
    assert elapsed >= 2.5
    assert gw.ids("active") == [message_id]  # still on disk, never dropped
    assert sink.snapshot() == []


def test_an_active_message_without_its_classification_counts_as_confidential(relay_lab, gateway_factory):
    # The sink offers no STARTTLS and the gateway has no certificate for the recipient: a
    # public message would go out in clear, a confidential one must be held.
    sink = relay_lab.sink("no-classification")
    relay_lab.domain("noclass.test", [sink])
    gw = gateway_factory({"delivery": _delivery(relay_lab)})
    message_id = _put_in_active(gw, "anne@firm.test", ["x@noclass.test"],
                                _message("x@noclass.test").replace(b"Hej", b"CPR 010190-1234. Hej"))
    gw.start()
    assert wait_until(lambda: message_id in gw.ids("done"), timeout=60)
    shown = json.loads(gw.cli("queue", "show", message_id, "--json").stdout)
    assert shown["recipients"][0]["status"] == "quarantined"
    assert sink.snapshot() == []
