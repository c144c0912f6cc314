"""`sikkermail hash-password NAME`: a users-file line for SMTP AUTH (scrypt)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from gateway.commands import CommandError, common_options
from gateway.smtp_in import hash_password


def register(sub: Any) -> None:
    p = sub.add_parser("hash-password", parents=[common_options()],
                       help="print a users_file line (name:scrypt hash) for SMTP AUTH; password from stdin or prompt")
    p.add_argument("name")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if ":" in args.name:
        raise CommandError("the name may not contain ':'")
    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
    if not password:
        raise CommandError("empty password")
    print(f"{args.name}:{hash_password(password.encode())}")
    return 0
