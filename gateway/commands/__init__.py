"""One module per CLI command group; each exposes `register(subparsers)`.

A command's handler takes the parsed arguments and returns the exit status:
0 ok, 1 a finding or failure the command reports, 2 usage error. User errors are
raised as `CommandError` (one clear line, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.config import Config, ConfigError, find_config, load_config


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def common_options() -> argparse.ArgumentParser:
    """-c/--config and --json, accepted by every command after its name."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-c", "--config", default=argparse.SUPPRESS,
                        help="config file (default ./sikkermail.toml, then /etc/sikkermail/sikkermail.toml)")
    parent.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print machine-readable JSON")
    return parent


def config_path(args: argparse.Namespace) -> Path:
    return find_config(getattr(args, "config", None))


def load(args: argparse.Namespace) -> Config:
    """The validated config, or ConfigError (printed by the CLI with every problem)."""
    return load_config(config_path(args))


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


__all__ = ["CommandError", "ConfigError", "common_options", "config_path", "load", "print_json", "wants_json"]
