"""Relay throughput: the gateway against a plain Postfix relay, same load, same run.

    sudo python bench/relay.py [--messages 2000] [--sessions 20] [--sizes 10240,102400]

Load: Postfix's `smtp-source` (S parallel sessions, N messages of the given body
size). Receiver: Postfix's `smtp-sink` (C, so it never is the bottleneck).
Baseline: a private Postfix instance relaying to the sink (relayhost, no DNS).
The gateway resolves the recipient domain's MX through a DNS server on loopback,
as it does in production. End-to-end msg/s: from the first connection until the
relay has delivered every message (gateway: every spool entry in done/; Postfix:
every "status=sent" in its log). Latency per message from each relay's own
record (gateway: journal delivery time - received_at; Postfix: the log's delay=).
Needs root (Postfix) and the Debian postfix package.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dnslib.server import DNSServer  # noqa: E402

from tests.fixtures.dns_server import Zone, _Quiet, _ZoneResolver  # noqa: E402
from tests.fixtures.postfix import PostfixInstance  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def smtp_source(port: int, messages: int, sessions: int, size: int) -> float:
    started = time.monotonic()
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(size),
                    "-f", "bench@firm.test", "-t", "modtager@bench.test", f"127.0.0.1:{port}"],
                   check=True, timeout=1800, capture_output=True)
    return started


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_gateway(messages: int, sessions: int, size: int, sink_port: int, dns_port: int,
                intake: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="sikkermail-bench-"))
    port = free_port()
    (folder / "sikkermail.toml").write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nhostname = "gateway.bench.test"\n'
        f'allowed_networks = ["127.0.0.0/8"]\nmax_message_size = "60MB"\nintake_processes = {intake}\n\n'
        # per-domain concurrency as Postfix's default_destination_concurrency_limit (20)
        f'[delivery]\nmx_port = {sink_port}\nretry = ["5s"]\nmax_per_domain = 20\n\n'
        f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n\n'
        f'[policy]\nfile = "{ROOT / "policy.toml"}"\n')
    log = (folder / "gateway.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "gateway", "-c", str(folder / "sikkermail.toml"), "serve"],
                               stdout=log, stderr=log, cwd=ROOT)
    try:
        wait_port(port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (folder / "gateway.log").read_text().count(
                '"intake-listening"') < intake - 1:
            time.sleep(0.1)  # every intake process listens before the load starts
        started = smtp_source(port, messages, sessions, size)
        done = folder / "var" / "spool" / "done"
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline and len(os.listdir(done)) < messages:
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        latencies = []
        for message_id in os.listdir(done):
            envelope = json.loads((done / message_id / "envelope.json").read_text())
            for line in (done / message_id / "journal").read_text().splitlines():
                record = json.loads(line)
                if record.get("e") == "status" and record.get("status") == "delivered":
                    latencies.append(record["at"] - envelope["received_at"])
        delivered = len(os.listdir(done))
    finally:
        process.terminate()
        process.wait(60)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
    return {"msgs": delivered, "seconds": elapsed, "rate": delivered / elapsed,
            "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99)}




def run_postfix(messages: int, sessions: int, size: int, sink_port: int) -> dict[str, float]:
    port = free_port()
    postfix = PostfixInstance(("127.0.0.1", port), ("127.0.0.1", sink_port)).start()
    try:
        started = smtp_source(port, messages, sessions, size)
        deadline = time.monotonic() + 1800
        sent = 0
        while time.monotonic() < deadline:
            sent = postfix.log().count("status=sent")
            if sent >= messages:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        delays = [float(m) for m in re.findall(r"delay=([\d.]+),.*status=sent", postfix.log())]
    finally:
        postfix.stop()
    return {"msgs": sent, "seconds": elapsed, "rate": sent / elapsed,
            "p50": percentile(delays, 0.5), "p99": percentile(delays, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--sizes", default="10240,102400")
    parser.add_argument("--no-postfix", action="store_true")
    parser.add_argument("--intake-processes", type=int, default=os.cpu_count() or 1,
                        help="[server] intake_processes for the gateway (default: one per core)")
    args = parser.parse_args()
    if os.geteuid() != 0 and not args.no_postfix:
        sys.exit("the Postfix baseline needs root (or pass --no-postfix)")

    sink_port = free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "postfix", f"127.0.0.1:{sink_port}", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    zone = Zone()
    zone.add("bench.test", "MX", "10 sink.bench.test.")
    zone.add("sink.bench.test", "A", "127.0.0.1")
    dns_port = free_port()
    dns = DNSServer(_ZoneResolver(zone), address="127.0.0.1", port=dns_port, logger=_Quiet())
    dns.start_thread()
    try:
        wait_port(sink_port)
        print(f"relay benchmark: {args.messages} messages, {args.sessions} sessions (smtp-source -> relay -> "
              f"smtp-sink); gateway with {args.intake_processes} intake process(es), full content classification")
        for size in (int(s) for s in args.sizes.split(",")):
            gw = run_gateway(args.messages, args.sessions, size, sink_port, dns_port, args.intake_processes)
            line = (f"{size // 1024:>4} KB  gateway {gw['rate']:7.1f} msg/s  p50 {gw['p50'] * 1000:6.1f} ms  "
                    f"p99 {gw['p99'] * 1000:6.1f} ms")
            if not args.no_postfix:
                pf = run_postfix(args.messages, args.sessions, size, sink_port)
                line += (f" | postfix {pf['rate']:7.1f} msg/s  p50 {pf['p50'] * 1000:6.1f} ms  "
                         f"p99 {pf['p99'] * 1000:6.1f} ms | ratio gateway/postfix {gw['rate'] / pf['rate']:.2f}x")
            print(line, flush=True)
    finally:
        dns.stop()
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
