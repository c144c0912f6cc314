"""TLS probe latency: cold (fresh resolver: DNS + STARTTLS handshakes per MX) against cached (SQLite hit).

    python -m bench.probe [--rounds 20]

Uses the test lab's real MX servers on loopback (aiosmtpd with TLS 1.3, a
self-signed one, a plain one) and its DNS server. Baseline: the cold probe of
the same domain in the same run; the ratio is cached/cold.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from dnslib.server import DNSServer

from gateway.config import load_config
from gateway.probe_setup import prober_from_config
from tests.fixtures.dns_server import DnsLab, Zone, _free_port, _Quiet, _ZoneResolver
from tests.fixtures.tls_lab import TlsLab


async def measure(cfg_path: Path, domains: list[str], rounds: int) -> dict[str, dict[str, list[float]]]:
    cfg = load_config(cfg_path)
    times: dict[str, dict[str, list[float]]] = {d: {"cold": [], "cached": []} for d in domains}
    for _ in range(rounds):
        for domain in domains:
            # A new prober (and so a new resolver with an empty DNS cache) for every cold
            # probe: reusing one would answer MX/A/TXT from dnspython's cache after round 1.
            # Building it (trust store, cache file) is not timed: a gateway does that once.
            prober = prober_from_config(cfg)
            try:
                started = time.perf_counter()
                cold = await prober.grade(domain, refresh=True)
                times[domain]["cold"].append(time.perf_counter() - started)
                assert not cold.from_cache
                started = time.perf_counter()
                result = await prober.grade(domain)
                times[domain]["cached"].append(time.perf_counter() - started)
                assert result.from_cache, "the second probe must come from the cache"
            finally:
                await prober.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sikkermail-bench-probe-"))
    zone = Zone()
    port = _free_port()
    dns = DNSServer(_ZoneResolver(zone), address="127.0.0.1", port=port, logger=_Quiet())
    dns.start_thread()
    lab = TlsLab(folder, DnsLab(zone, port))
    try:
        lab._bind_all()
        lab._start_https()
        lab.mail_domain("verified.bench.test", [lab.mx("tls13")])
        lab.mail_domain("selfsigned.bench.test", [lab.mx("selfsigned")])
        lab.mail_domain("plain.bench.test", [lab.mx("plain")])
        config = folder / "sikkermail.toml"
        config.write_text(lab.config_toml() + f'\n[spool]\npath = "{folder / "spool"}"\n')
        times = asyncio.run(measure(config, ["verified.bench.test", "selfsigned.bench.test", "plain.bench.test"],
                                    args.rounds))
    finally:
        lab.close()
        dns.stop()
    print(f"TLS probe latency, {args.rounds} rounds per domain (baseline: the cold probe)")
    for domain, kinds in times.items():
        cold = statistics.median(kinds["cold"]) * 1000
        cached = statistics.median(kinds["cached"]) * 1000
        print(f"  {domain:<24} cold median {cold:7.2f} ms   cached median {cached:6.3f} ms   "
              f"ratio cached/cold {cached / cold:.3f}")


if __name__ == "__main__":
    main()
