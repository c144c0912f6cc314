"""`sikkermail report --since DATE --until DATE [--format html|csv|json] [-o FILE] [--lang da|en]`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from gateway.audit import AuditError, parse_time
from gateway.commands import CommandError, common_options, wants_json
from gateway.commands.log import open_store
from gateway.report import build_report, report_csv, report_html


def register(sub: Any) -> None:
    p = sub.add_parser("report", parents=[common_options()], help="compliance report for a period")
    p.add_argument("--since", required=True, help="first day (2026-11-01) or time")
    p.add_argument("--until", required=True, help="last day, included (2026-11-30) or time")
    p.add_argument("--format", choices=["html", "csv", "json"], default=None,
                   help="default: html, or json with --json, or from the -o file's extension")
    p.add_argument("-o", "--output", help="write to this file (default: standard output)")
    p.add_argument("--lang", choices=["da", "en"], default="da", help="HTML language (default Danish)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        since, until = parse_time(args.since), parse_time(args.until, end=True)
    except AuditError as exc:
        raise CommandError(str(exc))
    if until <= since:
        raise CommandError("--until must be after --since")
    fmt = args.format or ("json" if wants_json(args) else None)
    if fmt is None and args.output:
        fmt = {".csv": "csv", ".json": "json"}.get(Path(args.output).suffix.lower(), "html")
    fmt = fmt or "html"
    store = open_store(args)
    try:
        report = build_report(store, since, until)
    finally:
        store.close_sync()
    if fmt == "json":
        text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    elif fmt == "csv":
        text = report_csv(report)
    else:
        text = report_html(report, args.lang)
    if args.output:
        # The report names recipients and incidents: readable by its owner only.
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        print(f"wrote {fmt} report to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
