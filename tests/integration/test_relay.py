"""The relay core end to end: the real gateway process, real DNS, real MX sinks."""

from __future__ import annotations

import email
import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.fixtures.relay_lab import ROOT, free_port, wait_until

MESSAGE = (
    "From: Anne <anne@firm.test>\r\nTo: {to}\r\nSubject: Mødeindkaldelse\r\n"
    "Message-ID: <{mid}@firm.test>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Hej, vi ses på torsdag i mødelokale Æ.\r\n"
)


def _message(to: str, mid: str = "m1") -> bytes:
    return MESSAGE.format(to=to, mid=mid).encode()


def _body(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[1]


@pytest.fixture
def sender_domain(relay_lab):
    """The internal senders' domain: DSNs and notices go back there."""
    if not hasattr(relay_lab, "_firm"):
        relay_lab._firm = relay_lab.sink("firm-mx")
        relay_lab.domain("firm.test", [relay_lab._firm])
    return relay_lab._firm


def test_public_mail_is_relayed_intact_and_the_spool_ends_empty(relay_lab, gateway_factory):
    sink = relay_lab.sink("plain-relay")
    relay_lab.domain("relay1.test", [sink])
    gw = gateway_factory().start()
    code, text = gw.send("anne@firm.test", ["bo@relay1.test"], _message("bo@relay1.test"))
    assert code == 250 and "queued as" in text
    got = sink.wait_for(1)
    assert len(got) == 1
    assert got[0].rcpt_tos == ("bo@relay1.test",) and got[0].mail_from == "anne@firm.test"
    assert _body(got[0].data) == _body(_message("bo@relay1.test"))
    assert got[0].data.startswith(b"Received: from internal.test")
    assert wait_until(lambda: not gw.ids("active") and not gw.ids("incoming") and len(gw.ids("done")) == 1)
    done = gw.cli("queue", "show", gw.ids("done")[0], "--json")
    shown = json.loads(done.stdout)
    assert shown["recipients"][0]["status"] == "delivered"
    assert shown["recipients"][0]["protection"] == "tls-opportunistic"
    assert not (gw.spool / "done" / gw.ids("done")[0] / "message").exists()


def test_recipients_of_one_domain_share_one_transaction(relay_lab, gateway_factory):
    sink = relay_lab.sink("shared")
    relay_lab.domain("shared.test", [sink])
    gw = gateway_factory().start()
    rcpts = ["a@shared.test", "b@shared.test", "c@shared.test"]
    assert gw.send("anne@firm.test", rcpts, _message(", ".join(rcpts)))[0] == 250
    got = sink.wait_for(1)
    time.sleep(0.5)
    assert len(sink.snapshot()) == 1
    assert sorted(got[0].rcpt_tos) == rcpts


def test_partial_acceptance_bounces_one_defers_one_delivers_one(relay_lab, gateway_factory, sender_domain):
    sink = relay_lab.sink("partial")
    relay_lab.domain("partial.test", [sink])
    gw = gateway_factory().start()
    rcpts = ["ok@partial.test", "perm-gone@partial.test", "temp-busy@partial.test"]
    before = len(sender_domain.snapshot())
    assert gw.send("anne@firm.test", rcpts, _message("team@partial.test", "partial"))[0] == 250
    assert sink.wait_for(1)[0].rcpt_tos == ("ok@partial.test",)
    dsns = sender_domain.wait_for(before + 1)
    dsn = email.message_from_bytes(dsns[-1].data)
    assert dsn.get_content_type() == "multipart/report"
    status = [p for p in dsn.walk() if p.get_content_type() == "message/delivery-status"][0]
    text = status.as_string()
    assert "perm-gone@partial.test" in text and "Status: 5.1.1" in text
    assert "temp-busy" not in text and "ok@partial.test" not in text
    assert dsns[-1].rcpt_tos == ("anne@firm.test",) and dsns[-1].mail_from in ("", "<>")  # null sender
    assert wait_until(lambda: len(gw.ids("deferred")) == 1 or len(gw.ids("active")) == 1)
    listing = json.loads(gw.cli("queue", "list", "--json").stdout)
    mine = [m for m in listing if m["kind"] == "mail"]
    assert len(mine) == 1
    statuses = {r["address"]: r["status"] for r in mine[0]["recipients"]}
    assert statuses == {"ok@partial.test": "delivered", "perm-gone@partial.test": "bounced",
                        "temp-busy@partial.test": "deferred"}


def test_second_mx_takes_over_when_the_first_is_down(relay_lab, tls_lab, gateway_factory):
    sink = relay_lab.sink("backup")
    down = tls_lab.mx("down")
    relay_lab.tls.dns.zone.add("failover.test", "MX", f"10 {down.name}.")
    relay_lab.tls.dns.zone.add(down.name, "A", down.address)
    relay_lab.tls.dns.zone.add("failover.test", "MX", f"20 {sink.name}.")
    relay_lab.tls.dns.zone.add(sink.name, "A", sink.address)
    gw = gateway_factory().start()
    assert gw.send("anne@firm.test", ["x@failover.test"], _message("x@failover.test"))[0] == 250
    assert len(sink.wait_for(1)) == 1


def test_null_mx_and_nxdomain_bounce_but_servfail_defers(relay_lab, gateway_factory, sender_domain):
    relay_lab.tls.dns.zone.add("nomail.test", "MX", "0 .")
    relay_lab.tls.dns.zone.fail("dnsbroken.test")
    gw = gateway_factory().start()
    before = len(sender_domain.snapshot())
    rcpts = ["a@nomail.test", "b@nonexistent-domain.test", "c@dnsbroken.test"]
    assert gw.send("anne@firm.test", rcpts, _message("a@nomail.test"))[0] == 250
    dsn = sender_domain.wait_for(before + 1)[-1]
    text = dsn.data.decode(errors="replace")
    assert "a@nomail.test" in text and "5.1.10" in text
    assert "b@nonexistent-domain.test" in text and "5.1.2" in text
    assert "c@dnsbroken.test" not in text.split("message/delivery-status", 1)[1]
    listing = json.loads(gw.cli("queue", "list", "--json").stdout)
    statuses = {r["address"]: r["status"] for m in listing for r in m["recipients"]}
    assert statuses["c@dnsbroken.test"] == "deferred"


def test_relaying_from_a_disallowed_network_is_refused(relay_lab, gateway_factory):
    gw = gateway_factory({"server": 'listen = "127.0.0.1:{PORT}"\nallowed_networks = ["192.0.2.0/24"]'}).start()
    code, text = gw.send("anne@firm.test", ["x@relay1.test"], _message("x@relay1.test"))
    assert code == 550 and text.startswith("5.7.1")
    assert gw.ids("incoming") == [] and gw.ids("active") == []


def _raw_session(port: int, lines: list[bytes], timeout: float = 10.0) -> list[bytes]:
    """Speak SMTP by hand, reading one reply per command (smtplib would fix our bytes)."""
    replies: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        reader = sock.makefile("rb")

        def reply() -> bytes:
            out = b""
            for _ in range(50):
                line = reader.readline()
                out += line
                if len(line) < 4 or line[3:4] != b"-":
                    break
            return out

        replies.append(reply())
        for line in lines:
            sock.sendall(line)
            replies.append(reply())
    return replies


def test_bare_lf_and_lf_dot_crlf_smuggling_are_rejected(relay_lab, gateway_factory):
    sink = relay_lab.sink("smuggle")
    relay_lab.domain("smuggle.test", [sink])
    gw = gateway_factory().start()
    smuggled = (b"Subject: hi\r\n\r\nfirst\n.\r\nMAIL FROM:<evil@firm.test>\r\nRCPT TO:<victim@smuggle.test>\r\n"
                b"DATA\r\nSubject: smuggled\r\n\r\nowned\r\n.\r\n")
    replies = _raw_session(gw.port, [b"EHLO client.test\r\n", b"MAIL FROM:<anne@firm.test>\r\n",
                                     b"RCPT TO:<bo@smuggle.test>\r\n", b"DATA\r\n", smuggled, b"QUIT\r\n"])
    assert replies[4].startswith(b"354")
    assert replies[5].startswith(b"554 5.6.0"), replies[5]
    bare = _raw_session(gw.port, [b"EHLO client.test\r\n", b"MAIL FROM:<anne@firm.test>\r\n",
                                  b"RCPT TO:<bo@smuggle.test>\r\n", b"DATA\r\n",
                                  b"Subject: x\r\n\r\nline one\nline two\r\n.\r\n", b"QUIT\r\n"])
    assert bare[5].startswith(b"554 5.6.0")
    time.sleep(1.0)
    assert sink.snapshot() == []
    assert gw.ids("incoming") == [] and gw.ids("active") == [] and gw.ids("done") == []


def test_oversized_message_and_huge_header_are_refused(relay_lab, gateway_factory):
    gw = gateway_factory({"server": 'listen = "127.0.0.1:{PORT}"\nmax_message_size = "64KB"\n'
                                    'allowed_networks = ["127.0.0.0/8"]'}).start()
    code, _ = gw.send("anne@firm.test", ["x@relay1.test"], b"Subject: big\r\n\r\n" + b"x" * 998 * 0 +
                      (b"y" * 900 + b"\r\n") * 100)
    assert code == 552
    header = b"".join(b"X-Filler-%05d: some header value\r\n" % i for i in range(10_000))
    gw2 = gateway_factory(name="gw2").start()
    code, text = gw2.send("anne@firm.test", ["x@relay1.test"], header + b"\r\nbody\r\n")
    assert code == 552 and "5.3.4" in text
    assert gw2.ids("incoming") == [] and gw2.ids("active") == []
    # and the gateway is still serving
    sink = relay_lab.sink("after-huge")
    relay_lab.domain("afterhuge.test", [sink])
    assert gw2.send("anne@firm.test", ["ok@afterhuge.test"], _message("ok@afterhuge.test"))[0] == 250
    assert len(sink.wait_for(1)) == 1


def test_malformed_addresses_are_refused(relay_lab, gateway_factory):
    gw = gateway_factory().start()
    replies = _raw_session(gw.port, [b"EHLO client.test\r\n", b"MAIL FROM:<anne@firm.test>\r\n",
                                     b"RCPT TO:<no-at-sign>\r\n", b"RCPT TO:<a@b@c.test>\r\n",
                                     b"RCPT TO:<x@bad!domain.test>\r\n", b"QUIT\r\n"])
    assert replies[3].startswith(b"553") or replies[3].startswith(b"501")
    assert replies[4].startswith(b"553") or replies[4].startswith(b"501")
    assert replies[5].startswith(b"553") or replies[5].startswith(b"501")


def test_client_that_disconnects_mid_data_leaves_nothing(relay_lab, gateway_factory):
    sink = relay_lab.sink("cut")
    relay_lab.domain("cut.test", [sink])
    gw = gateway_factory().start()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        for command in (b"EHLO client.test\r\n", b"MAIL FROM:<anne@firm.test>\r\n", b"RCPT TO:<bo@cut.test>\r\n",
                        b"DATA\r\n"):
            sock.sendall(command)
            for _ in range(20):
                line = reader.readline()
                if line[3:4] != b"-":
                    break
        sock.sendall(b"Subject: half\r\n\r\nthe first half of a message that never ends\r\n")
    time.sleep(1.5)
    assert sink.snapshot() == []
    assert gw.ids("tmp") == [] and gw.ids("incoming") == [] and gw.ids("active") == []


def test_swaks_as_the_sending_client(relay_lab, gateway_factory):
    swaks = shutil.which("swaks")
    assert swaks, "swaks is installed by .ci/run"
    sink = relay_lab.sink("swaks")
    relay_lab.domain("swaks.test", [sink])
    gw = gateway_factory().start()
    result = subprocess.run([swaks, "--server", f"127.0.0.1:{gw.port}", "--from", "anne@firm.test",
                             "--to", "x@swaks.test", "--h-Subject", "swaks test", "--body", "hej fra swaks"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    got = sink.wait_for(1)
    assert b"hej fra swaks" in got[0].data


def test_smtputf8_addresses_pass_through(relay_lab, gateway_factory):
    sink = relay_lab.sink("utf8")
    relay_lab.domain("utf8.test", [sink])
    gw = gateway_factory().start()
    replies = _raw_session(gw.port, [
        b"EHLO client.test\r\n", "MAIL FROM:<søren@firm.test> SMTPUTF8\r\n".encode(),
        "RCPT TO:<åse@utf8.test>\r\n".encode(), b"DATA\r\n",
        "From: søren@firm.test\r\nTo: åse@utf8.test\r\nSubject: æøå\r\n\r\nblåbærgrød\r\n.\r\n".encode(),
        b"QUIT\r\n"])
    assert replies[5].startswith(b"250"), replies
    got = sink.wait_for(1)
    assert got[0].rcpt_tos == ("åse@utf8.test",)
    assert "blåbærgrød".encode() in got[0].data


def test_sigterm_drains_and_a_restart_resumes_deferred_mail(relay_lab, gateway_factory):
    sink = relay_lab.sink("resume")
    gw = gateway_factory().start()
    # The domain has no DNS yet: SERVFAIL-free NXDOMAIN would bounce, so make it fail temporarily.
    relay_lab.tls.dns.zone.fail("resume.test")
    assert gw.send("anne@firm.test", ["x@resume.test"], _message("x@resume.test"))[0] == 250
    assert wait_until(lambda: len(gw.ids("deferred")) == 1)
    assert gw.stop() == 0
    assert "stopped" in gw.log_text()
    relay_lab.tls.dns.zone.remove("resume.test")
    relay_lab.domain("resume.test", [sink])
    gw.start()
    assert len(sink.wait_for(1, timeout=30)) == 1
    assert wait_until(lambda: gw.ids("deferred") == [] and gw.ids("active") == [])


def test_sighup_with_a_broken_policy_keeps_the_old_one(relay_lab, gateway_factory, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text((ROOT / "policy.toml").read_text())
    gw = gateway_factory({"policy": f'file = "{policy}"'}).start()
    policy.write_text("[levels.public]\nprotections = [\"carrier-pigeon\"]\n")
    gw.process.send_signal(1)  # SIGHUP
    assert wait_until(lambda: "policy-reload-rejected" in gw.log_text(), timeout=10)
    assert "carrier-pigeon" in gw.log_text()
    sink = relay_lab.sink("after-hup")
    relay_lab.domain("afterhup.test", [sink])
    assert gw.send("anne@firm.test", ["x@afterhup.test"], _message("x@afterhup.test"))[0] == 250
    assert len(sink.wait_for(1)) == 1


def test_metrics_and_health_endpoint(relay_lab, gateway_factory):
    port = free_port()
    sink = relay_lab.sink("metrics")
    relay_lab.domain("metrics.test", [sink])
    gw = gateway_factory({"server": f'listen = "127.0.0.1:{{PORT}}"\nallowed_networks = ["127.0.0.0/8"]\n'
                                    f'health_listen = "127.0.0.1:{port}"'}).start()
    assert gw.send("anne@firm.test", ["x@metrics.test"], _message("x@metrics.test"))[0] == 250
    sink.wait_for(1)

    def metrics() -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()

    assert wait_until(lambda: 'sikkermail_delivered_total{protection="tls-opportunistic"} 1.0' in metrics())
    text = metrics()
    assert "sikkermail_received_total 1.0" in text
    assert "sikkermail_delivery_latency_seconds_count 1.0" in text
    assert 'sikkermail_queue_messages{state="deferred"}' in text
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read() == b"ok\n"


def test_per_domain_concurrency_limit_is_respected(relay_lab, gateway_factory):
    sink = relay_lab.sink("limited")
    sink.delay = 0.3
    relay_lab.domain("limited.test", [sink])
    gw = gateway_factory({"delivery": f'mx_port = {relay_lab.port}\nmax_per_domain = 2\nretry = ["1s"]\n'
                                      'connect_timeout = "3s"\ndelivery_timeout = "20s"'}).start()
    for n in range(8):
        assert gw.send("anne@firm.test", [f"r{n}@limited.test"], _message(f"r{n}@limited.test", f"c{n}"))[0] == 250
    assert len(sink.wait_for(8, timeout=60)) == 8
    assert sink.max_in_data == 2


def test_an_mx_that_never_answers_hits_the_delivery_deadline_and_defers(relay_lab, tls_lab, gateway_factory):
    silent = tls_lab.mx("silent")
    relay_lab.tls.dns.zone.add("silent.test", "MX", f"10 {silent.name}.")
    relay_lab.tls.dns.zone.add(silent.name, "A", silent.address)
    gw = gateway_factory({"delivery": f'mx_port = {relay_lab.port}\nretry = ["1h"]\n'
                                      'connect_timeout = "2s"\ndelivery_timeout = "3s"'}).start()
    assert gw.send("anne@firm.test", ["x@silent.test"], _message("x@silent.test"))[0] == 250
    assert wait_until(lambda: len(gw.ids("deferred")) == 1, timeout=30)
    shown = json.loads(gw.cli("queue", "show", gw.ids("deferred")[0], "--json").stdout)
    assert shown["recipients"][0]["status"] == "deferred"
    assert "451 4.4.1" in shown["recipients"][0]["response"]
