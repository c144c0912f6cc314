"""`sikkermail check-config`: validate the config and the policy file, print every problem."""

from __future__ import annotations

import argparse
import sys
import tomllib
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
        # an administrator fixing one file wants the other's problems in the same run
        policy_file = _policy_file_of_invalid_config(Path(path))
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


def _policy_file_of_invalid_config(path: Path) -> str | None:
    """The policy file an invalid config names (or the default beside it), if it exists."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        data = {}
    section = data.get("policy")
    name = section.get("file") if isinstance(section, dict) else None
    if not isinstance(name, str) or not name:
        name = "policy.toml"
    candidate = Path(name) if Path(name).is_absolute() else path.parent / name
    return str(candidate) if candidate.is_file() else None
