"""`sikkermail serve`: run the gateway in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.commands import CommandError, common_options, load
from policy.policyfile import PolicyError, load_policy


def register(sub: Any) -> None:
    p = sub.add_parser("serve", parents=[common_options()],
                       help="run the gateway in the foreground (SIGTERM drains and stops, SIGHUP reloads the policy)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gateway.server import serve

    cfg = load(args)
    try:
        load_policy(Path(cfg.policy.file))
    except PolicyError as exc:
        raise CommandError("; ".join(str(p) for p in exc.problems))
    try:
        serve(cfg)
    except OSError as exc:
        raise CommandError(f"cannot start: {exc}")
    return 0
