"""`sikkermail check-config`: validate the config and the policy file, print every problem."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.commands import common_options, config_path, print_json, wants_json
from gateway.config import ConfigError, load_config
from policy.policyfile import PolicyError, load_policy


def register(sub: Any) -> None:
    p = sub.add_parser("check-config", parents=[common_options()],
                       help="validate config and policy files; print every problem")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = config_path(args)
    problems: list[str] = []
    policy_file = None
    try:
        cfg = load_config(path)
        policy_file = cfg.policy.file
    except ConfigError as exc:
        problems.extend(str(p) for p in exc.problems)
    if policy_file:
        try:
            load_policy(Path(policy_file))
        except PolicyError as exc:
            problems.extend(str(p) for p in exc.problems)
    if wants_json(args):
        print_json({"config": str(path), "policy": policy_file, "ok": not problems, "problems": problems})
    elif problems:
        for line in problems:
            print(line, file=sys.stderr)
    else:
        print(f"{path}: ok (policy {policy_file}: ok)")
    return 1 if problems else 0
