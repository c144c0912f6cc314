"""`sikkermail`: the command line. Commands live in gateway/commands/, one module each."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import gateway.commands as commands
from gateway.commands import CommandError, common_options
from gateway.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sikkermail", description="Outbound e-mail encryption gateway", parents=[common_options()]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"gateway.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors
    try:
        status = int(args.run(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"sikkermail: {problem}", file=sys.stderr)
        return 1
    except CommandError as exc:
        print(f"sikkermail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
