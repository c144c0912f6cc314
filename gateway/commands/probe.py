"""`sikkermail probe DOMAIN`: the domain's MX hosts, what each can do, and the TLS grade.

Exit 0 when the domain was graded; 1 when the grade is unknown (DNS failure,
no MX reachable) or the domain receives no mail (NXDOMAIN, null MX).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
from typing import Any

from gateway.commands import CommandError, common_options, load, print_json, wants_json
from gateway.probe_setup import prober_from_config
from tlsprobe import DomainStatus, DomainTls, MxProbe
from tlsprobe.cache import CacheError


def register(sub: Any) -> None:
    p = sub.add_parser("probe", parents=[common_options()],
                       help="MX hosts, their STARTTLS/TLS/certificate status and the domain's TLS grade")
    p.add_argument("domain", help="recipient domain, e.g. example.dk")
    p.add_argument("--refresh", action="store_true", help="probe again even if a cached grade is valid")
    p.set_defaults(run=run)


async def _grade(args: argparse.Namespace) -> DomainTls:
    try:
        prober = prober_from_config(load(args))
    except CacheError as exc:
        raise CommandError(str(exc))
    try:
        return await prober.grade(args.domain, refresh=args.refresh)
    finally:
        await prober.close()


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(_grade(args))
    if wants_json(args):
        print_json(result.to_dict())
    else:
        print(_render(result))
    return 0 if result.status is DomainStatus.GRADED else 1


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _mx_line(probe: MxProbe) -> str:
    head = f"  MX {probe.preference} {probe.name} [{probe.address}]"
    if not probe.reachable:
        return f"{head}: unreachable -> not counted\n      {probe.reason}"
    parts = [f"STARTTLS {'yes' if probe.starttls else 'no'}"]
    if probe.tls_version:
        parts.append(probe.tls_version + (f" {probe.cipher}" if probe.cipher else ""))
    if probe.cert_verified is not None:
        cert = "certificate verified" if probe.cert_verified else "certificate NOT verified"
        if probe.cert_subject:
            cert += f" ({probe.cert_subject}, expires {probe.cert_not_after})"
        parts.append(cert)
    grade = probe.grade.value if probe.grade else "unknown"
    return f"{head}: {', '.join(parts)} -> {grade}\n      {probe.reason}"


def _render(result: DomainTls) -> str:
    grade = result.grade.value if result.grade else result.status.value
    if result.mta_sts_enforced:
        grade += " (via MTA-STS enforce)"
    origin = "cached" if result.from_cache else "probed now"
    lines = [f"{result.domain}: {grade}  [{result.status.value}; probed {_when(result.probed_at)}, {origin}]"]
    lines.extend(_mx_line(probe) for probe in result.mx)
    policy = result.mta_sts
    if policy is not None:
        lines.append(f"  MTA-STS: mode {policy.mode.value}, mx {', '.join(policy.mx) or '-'}, "
                     f"max_age {policy.max_age}s, id {policy.policy_id} ({policy.source})")
    else:
        lines.append("  MTA-STS: no policy")
    lines.append(f"  reason: {result.reason}")
    return "\n".join(lines)
