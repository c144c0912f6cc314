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

Where the time goes: every run also prints the machine's CPU milliseconds per
message (all cores, from /proc/stat: relay, load generator and sink alike, the
same for both relays) and the gateway's CPU seconds per process. With
`--profile` and py-spy installed (`pip install py-spy`), the gateway's queue
process is sampled while the load runs (only while it holds the GIL, so idle
waits and fsync do not count) and the samples are summed by the innermost
sikkermail function on the stack and the library running under it.
"""

from __future__ import annotations

import argparse
import collections
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


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def intake_children(config: Path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"gateway.intake" in cmdline and str(config).encode() in cmdline:
                pids.append(int(entry))
    return pids


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling `pid` while it holds the GIL, raw folded stacks into `out`; None without py-spy."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        print("  (--profile: py-spy not found; pip install py-spy)", flush=True)
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--gil", "--rate", "200", "--format", "raw",
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(spy: subprocess.Popen[bytes] | None, out: Path, top: int = 14) -> None:
    if spy is None:
        return
    spy.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
    try:
        spy.wait(60)
    except subprocess.TimeoutExpired:
        spy.kill()
    if not out.exists():
        print("  (--profile: py-spy wrote nothing)")
        return
    by_area: collections.Counter[str] = collections.Counter()
    by_module: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        owner, module = "(no sikkermail frame: event loop, executor threads)", "asyncio / threads"
        for frame in reversed(frames):
            m = re.search(r"^(.*?) \(((?:gateway|policy|certdir|tlsprobe)/[^:]+):", frame)
            if m and not m.group(2).endswith(("server.py", "__main__.py", "cli.py", "commands/serve.py")):
                owner, module = f"{m.group(1)} ({m.group(2)})", m.group(2)
                break
        leaf = re.search(r"\(([^:]+):", frames[-1])
        library = leaf.group(1).split("/")[0] if leaf else "?"
        library = "own code" if library in ("gateway", "policy", "certdir", "tlsprobe") else library
        by_area[f"{owner} -> {library}"] += n
        by_module[module] += n
    if not total:
        print("  (--profile: no samples)")
        return
    print(f"  queue process, {total} samples while holding the GIL; by sikkermail module:")
    for module, n in by_module.most_common(top):
        print(f"    {n / total * 100:5.1f}%  {module}")
    print("  by innermost sikkermail function -> library running under it:")
    for area, n in by_area.most_common(top):
        print(f"    {n / total * 100:5.1f}%  {area}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_gateway(messages: int, sessions: int, size: int, sink_port: int, dns_port: int,
                intake: int, profile: bool = False) -> dict[str, float]:
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
                '"intake-listening"') < (intake if intake > 1 else 0):
            time.sleep(0.1)  # every intake process listens before the load starts
        children = intake_children(folder / "sikkermail.toml")
        cpu_before = {pid: process_cpu(pid) for pid in [process.pid, *children]}
        busy_before = machine_busy()
        spy = start_profiler(process.pid, folder / "profile.txt") if profile else None
        started = smtp_source(port, messages, sessions, size)
        done = folder / "var" / "spool" / "done"
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline and len(os.listdir(done)) < messages:
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        busy_after = machine_busy()
        queue_cpu = process_cpu(process.pid) - cpu_before[process.pid]
        intake_cpu = sum(process_cpu(pid) - cpu_before[pid] for pid in children)
        stop_profiler(spy, folder / "profile.txt")
        latencies = []
        for message_id in os.listdir(done):
            envelope = json.loads((done / message_id / "envelope.json").read_text())
            for line in (done / message_id / "journal").read_text().splitlines():
                record = json.loads(line)
                if record.get("e") == "status" and record.get("status") == "delivered":
                    latencies.append(record["at"] - envelope["received_at"])
        delivered = sum(1 for message_id in os.listdir(done)
                        if '"status": "delivered"' in (done / message_id / "journal").read_text())
    finally:
        process.terminate()
        process.wait(60)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
    return {"msgs": delivered, "seconds": elapsed, "rate": delivered / elapsed,
            "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "machine_ms": (busy_after[0] - busy_before[0]) * 1000 / max(delivered, 1),
            "machine_util": (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1e-9),
            "queue_ms": queue_cpu * 1000 / max(delivered, 1), "queue_util": queue_cpu / elapsed,
            "intake_ms": intake_cpu * 1000 / max(delivered, 1)}




def run_postfix(messages: int, sessions: int, size: int, sink_port: int) -> dict[str, float]:
    port = free_port()
    postfix = PostfixInstance(("127.0.0.1", port), ("127.0.0.1", sink_port)).start()
    try:
        busy_before = machine_busy()
        started = smtp_source(port, messages, sessions, size)
        deadline = time.monotonic() + 1800
        sent = 0
        while time.monotonic() < deadline:
            sent = postfix.log().count("status=sent")
            if sent >= messages:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        busy_after = machine_busy()
        delays = [float(m) for m in re.findall(r"delay=([\d.]+),.*status=sent", postfix.log())]
    finally:
        postfix.stop()
    return {"msgs": sent, "seconds": elapsed, "rate": sent / elapsed,
            "p50": percentile(delays, 0.5), "p99": percentile(delays, 0.99),
            "machine_ms": (busy_after[0] - busy_before[0]) * 1000 / max(sent, 1),
            "machine_util": (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--sizes", default="10240,102400")
    parser.add_argument("--no-postfix", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="sample the gateway's queue process with py-spy and print where its time goes")
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
            gw = run_gateway(args.messages, args.sessions, size, sink_port, dns_port, args.intake_processes,
                             args.profile)
            line = (f"{size // 1024:>4} KB  gateway {gw['rate']:7.1f} msg/s  p50 {gw['p50'] * 1000:6.1f} ms  "
                    f"p99 {gw['p99'] * 1000:6.1f} ms")
            cpu = (f"       CPU  gateway {gw['machine_ms']:5.2f} ms/msg on the machine ({gw['machine_util'] * 100:3.0f}% "
                   f"busy); queue process {gw['queue_ms']:5.2f} ms/msg ({gw['queue_util'] * 100:3.0f}% of a core), "
                   f"intake children {gw['intake_ms']:5.2f} ms/msg")
            if not args.no_postfix:
                pf = run_postfix(args.messages, args.sessions, size, sink_port)
                line += (f" | postfix {pf['rate']:7.1f} msg/s  p50 {pf['p50'] * 1000:6.1f} ms  "
                         f"p99 {pf['p99'] * 1000:6.1f} ms | ratio gateway/postfix {gw['rate'] / pf['rate']:.2f}x")
                cpu += (f" | postfix {pf['machine_ms']:5.2f} ms/msg on the machine "
                        f"({pf['machine_util'] * 100:3.0f}% busy)")
            print(line, flush=True)
            print(cpu, flush=True)
    finally:
        dns.stop()
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
