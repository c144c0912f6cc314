"""Certificate lookup latency: cold (empty cache, new directory: LDAP connect,
search, CA fetch, CRL fetch and validation) against cached (SQLite hit), and a
warm miss (refresh=True on a live directory: reused connection, cached CRL).

Runs a real slapd and the test PKI on 127.0.0.1, like the integration tests.
Baseline: the cold lookup. Prints medians and the ratios against it.

    python -m bench.lookup [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from certdir import CertificateDirectory, DirectorySettings, LdapSettings, LookupStatus
from tests.fixtures.oces_pki import build_pki, serve_publisher
from tests.fixtures.slapd import run_slapd

ADDRESSES = ("person@borger.test", "medarbejder@kommune.test")


async def measure(settings: DirectorySettings, rounds: int, folder: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"cold": [], "warm-miss": [], "cached": []}
    for i in range(rounds):
        cfg = DirectorySettings(**{**settings.__dict__, "cache_path": folder / f"cache-{i}.db"})
        directory = CertificateDirectory(cfg)
        try:
            address = ADDRESSES[i % len(ADDRESSES)]
            t = time.perf_counter()
            result = await directory.lookup(address)
            times["cold"].append(time.perf_counter() - t)
            assert result.status is LookupStatus.FOUND, result.reason
            t = time.perf_counter()
            result = await directory.lookup(address, refresh=True)
            times["warm-miss"].append(time.perf_counter() - t)
            assert result.status is LookupStatus.FOUND and not result.cached
            t = time.perf_counter()
            result = await directory.lookup(address)
            times["cached"].append(time.perf_counter() - t)
            assert result.cached
        finally:
            await directory.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, serve_publisher() as publisher:
        folder = Path(tmp)
        pki = build_pki(folder / "pki", publisher)
        with run_slapd(folder / "slapd", pki) as slapd:
            settings = DirectorySettings(
                trust_anchors=(pki.trust_anchors,), local_store=folder / "store",
                ldap=(LdapSettings(name="oces", url=slapd.url, timeout=5.0),), fetch_timeout=5.0)
            times = asyncio.run(measure(settings, args.rounds, folder))
    base = statistics.median(times["cold"])
    print(f"certificate lookup, {args.rounds} rounds, addresses {', '.join(ADDRESSES)} (baseline: cold)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:10} median {median * 1000:8.2f} ms  p90 {sorted(values)[int(len(values) * 0.9) - 1] * 1000:8.2f} ms"
              f"  ratio to cold {median / base:6.3f}")


if __name__ == "__main__":
    main()
