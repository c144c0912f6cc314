"""`sikkermail quarantine list / show / release / delete / purge`: held messages, on record."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.audit import AuditError, format_time, operator_name
from gateway.commands import CommandError, common_options, load, print_json, wants_json
from gateway.commands.log import open_store
from gateway.quarantine import QuarantineError, QuarantineStore, delete, purge, release
from policy.model import Protection


def register(sub: Any) -> None:
    p = sub.add_parser("quarantine", parents=[common_options()], help="held messages")
    commands = p.add_subparsers(dest="quarantine_command", metavar="SUBCOMMAND")
    commands.required = True

    listing = commands.add_parser("list", parents=[common_options()], help="held messages")
    listing.set_defaults(run=run_list)

    show = commands.add_parser("show", parents=[common_options()], help="one held message and why")
    show.add_argument("id")
    show.set_defaults(run=run_show)

    rel = commands.add_parser("release", parents=[common_options()],
                              help="send a held message on with a chosen protection (audited)")
    rel.add_argument("id")
    rel.add_argument("--reason", required=True, help="why (kept in the audit log)")
    rel.add_argument("--protection", choices=[p.value for p in Protection],
                     help="default: the weakest protection the message's policy allows")
    rel.add_argument("--operator", help="who acts (default: the OS user)")
    rel.set_defaults(run=run_release)

    dele = commands.add_parser("delete", parents=[common_options()], help="delete a held message (audited)")
    dele.add_argument("id")
    dele.add_argument("--reason", required=True, help="why (kept in the audit log)")
    dele.add_argument("--operator", help="who acts (default: the OS user)")
    dele.set_defaults(run=run_delete)

    pur = commands.add_parser("purge", parents=[common_options()],
                              help="delete held messages past [quarantine] retention (audited)")
    pur.add_argument("--operator", help="who acts (default: the OS user)")
    pur.set_defaults(run=run_purge)


def run_list(args: argparse.Namespace) -> int:
    try:
        held = QuarantineStore(load(args)).list_held()
    except QuarantineError as exc:  # the shared (PostgreSQL) quarantine unreachable: one line, no traceback
        raise CommandError(str(exc))
    if wants_json(args):
        print_json([h.to_json() for h in held])
        return 0
    rows = [("ID", "HELD", "LEVEL", "SENDER", "RECIPIENTS", "WHY")]
    for h in held:
        why = next(iter(h.reasons.values()), "")
        rows.append((h.id, format_time(h.held_at), h.level.value, h.sender, ", ".join(h.recipients),
                     why if len(why) <= 60 else why[:57] + "..."))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(held)} held message(s)")
    return 0


def run_show(args: argparse.Namespace) -> int:
    try:
        held = QuarantineStore(load(args)).get(args.id)
    except QuarantineError as exc:
        raise CommandError(str(exc))
    if wants_json(args):
        print_json(held.to_json())
        return 0
    print(f"Held         {held.id} since {format_time(held.held_at)}")
    print(f"Audit record {held.audit_id}")
    print(f"Sender       {held.sender}   size {held.size} bytes")
    print(f"Level        {held.level.value}; policy allows {', '.join(p.value for p in held.allowed)}")
    for evidence in held.classification.get("evidence", []):
        samples = ", ".join(evidence.get("samples", []))
        print(f"  evidence   {evidence['detector']} x{evidence['count']}" + (f": {samples}" if samples else ""))
    for address, why in held.reasons.items():
        print(f"Recipient    {address}")
        print(f"  why held   {why}")
    return 0


def run_release(args: argparse.Namespace) -> int:
    cfg = load(args)
    audit = open_store(args)
    try:
        done = release(cfg, audit, args.id, reason=args.reason, operator=operator_name(args.operator),
                       protection=Protection(args.protection) if args.protection else None)
    except (QuarantineError, AuditError) as exc:
        raise CommandError(str(exc))
    finally:
        audit.close_sync()
    if wants_json(args):
        print_json({"id": done.quarantine_id, "spool_id": done.spool_id, "protection": done.protection.value,
                    "incident": done.incident})
    else:
        print(f"released {done.quarantine_id} with {done.protection.value} as {done.spool_id}")
        if done.incident:
            print(f"below policy: incident {done.incident} opened (72-hour clock running; "
                  f"see `sikkermail incidents show {done.incident}`)")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    cfg = load(args)
    audit = open_store(args)
    try:
        held = delete(cfg, audit, args.id, reason=args.reason, operator=operator_name(args.operator))
    except (QuarantineError, AuditError) as exc:
        raise CommandError(str(exc))
    finally:
        audit.close_sync()
    if wants_json(args):
        print_json({"id": held.id, "deleted": True})
    else:
        print(f"deleted {held.id}")
    return 0


def run_purge(args: argparse.Namespace) -> int:
    cfg = load(args)
    audit = open_store(args)
    try:
        purged = purge(cfg, audit, operator=operator_name(args.operator))
    except (QuarantineError, AuditError) as exc:
        raise CommandError(str(exc))
    finally:
        audit.close_sync()
    if wants_json(args):
        print_json({"purged": [h.id for h in purged]})
    else:
        print(f"purged {len(purged)} held message(s) past retention")
    return 0
