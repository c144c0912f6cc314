"""`sikkermail lookup ADDRESS`: the certificate that would be used, and each
candidate rejected with its reason. Exit 0 when one was found, 1 otherwise."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from certdir import CandidateCert, CertdirError, LookupResult, LookupStatus, Rejection
from gateway.certdir_setup import directory_from_config
from gateway.commands import CommandError, common_options, load, print_json, wants_json


def register(sub: Any) -> None:
    p = sub.add_parser("lookup", parents=[common_options()],
                       help="the certificate that would be used for ADDRESS, and every rejected one")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--refresh", action="store_true", help="ask the sources again, ignoring the cache")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)

    async def go() -> LookupResult:
        directory = directory_from_config(cfg)
        try:
            return await directory.lookup(args.address, refresh=args.refresh)
        finally:
            await directory.close()

    try:
        result = asyncio.run(go())
    except CertdirError as exc:
        raise CommandError(str(exc))
    if wants_json(args):
        print_json(result_json(result))
    else:
        print(render(result))
    return 0 if result.status is LookupStatus.FOUND else 1


def candidate_json(c: CandidateCert) -> dict[str, Any]:
    return {"subject": c.subject, "issuer": c.issuer, "serial": c.serial, "sha256": c.sha256,
            "source": c.source, "entry": c.entry, "not_before": c.not_before.isoformat(),
            "not_after": c.not_after.isoformat(), "key": c.key, "revocation": c.revocation}


def rejection_json(r: Rejection) -> dict[str, Any]:
    return {"source": r.source, "entry": r.entry, "code": r.code.value, "reason": r.reason,
            "certificate": candidate_json(r.candidate) if r.candidate else None}


def result_json(result: LookupResult) -> dict[str, Any]:
    return {"address": result.address, "status": result.status.value, "reason": result.reason,
            "cached": result.cached,
            "chosen": candidate_json(result.chosen) if result.chosen else None,
            "rejected": [rejection_json(r) for r in result.rejected], "errors": list(result.errors)}


def _certificate_lines(c: CandidateCert, indent: str) -> list[str]:
    return [
        f"{indent}subject:  {c.subject}",
        f"{indent}issuer:   {c.issuer}",
        f"{indent}serial:   {c.serial}",
        f"{indent}SHA-256:  {c.sha256}",
        f"{indent}validity: {c.not_before:%Y-%m-%d %H:%M} to {c.not_after:%Y-%m-%d %H:%M} UTC",
        f"{indent}key:      {c.key}",
        f"{indent}source:   {c.source}" + (f" ({c.entry})" if c.entry else ""),
    ] + ([f"{indent}revocation: {c.revocation}"] if c.revocation else [])


def render(result: LookupResult) -> str:
    lines = [f"{result.address}: {result.status.value}" + (" (cached)" if result.cached else ""),
             f"  reason: {result.reason}"]
    if result.chosen:
        lines.append("  chosen:")
        lines += _certificate_lines(result.chosen, "    ")
    if result.rejected:
        lines.append(f"  rejected ({len(result.rejected)}):")
        for r in result.rejected:
            lines.append(f"  - {r.code.value}: {r.reason}")
            if r.candidate:
                lines += _certificate_lines(r.candidate, "      ")
            else:
                lines.append(f"      source:   {r.source}" + (f" ({r.entry})" if r.entry else ""))
    for error in result.errors:
        lines.append(f"  could not ask: {error}")
    return "\n".join(lines)
