"""`sikkermail incidents list / show / update / open`: the breach log (GDPR art. 33(5))."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.audit import (
    AuditError,
    data_categories,
    data_subjects_estimate,
    format_time,
    operator_name,
)
from gateway.commands import CommandError, common_options, print_json, wants_json
from gateway.commands.log import open_store
from gateway.incidents import FIELDS, changes_from, deadline_state, deadline_text


def register(sub: Any) -> None:
    p = sub.add_parser("incidents", parents=[common_options()],
                       help="incident records for protected mail that left below policy")
    commands = p.add_subparsers(dest="incidents_command", metavar="SUBCOMMAND")
    commands.required = True

    listing = commands.add_parser("list", parents=[common_options()], help="incidents, newest last")
    listing.add_argument("--status", choices=["open", "closed"])
    listing.set_defaults(run=run_list)

    show = commands.add_parser("show", parents=[common_options()], help="one incident with its history")
    show.add_argument("id")
    show.set_defaults(run=run_show)

    update = commands.add_parser("update", parents=[common_options()], help="edit an incident (audited)")
    update.add_argument("id")
    _field_options(update)
    update.set_defaults(run=run_update)

    opened = commands.add_parser("open", parents=[common_options()],
                                 help="record an incident found by hand (e.g. a misconfiguration)")
    opened.add_argument("--message", action="append", default=[], help="audit record id concerned (repeatable)")
    _field_options(opened)
    opened.set_defaults(run=run_open)


def _field_options(parser: argparse.ArgumentParser) -> None:
    for field in FIELDS:
        parser.add_argument(field.option, dest=field.name, help=field.help)
    parser.add_argument("--operator", help="who acts (default: the OS user)")


def run_list(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        incidents = store.incidents(status=args.status)
    finally:
        store.close_sync()
    if wants_json(args):
        print_json([{**i, "deadline_state": deadline_state(i)} for i in incidents])
        return 0
    rows = [("ID", "CREATED", "STATUS", "DEADLINE", "WHAT HAPPENED")]
    for i in incidents:
        what = i["what_happened"] if len(i["what_happened"]) <= 60 else i["what_happened"][:57] + "..."
        rows.append((i["id"], format_time(i["created_at"]), i["status"], deadline_text(i), what))
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(incidents)} incident(s)")
    return 0


def print_incident(incident: dict[str, Any]) -> None:
    labels = [
        ("Incident", incident["id"]), ("Status", incident["status"]),
        ("Created", f"{format_time(incident['created_at'])} by {incident['created_by']}"),
        ("Discovered", format_time(incident["discovered_at"])),
        ("72-hour deadline", deadline_text(incident)),
        ("What happened", incident["what_happened"]), ("Cause", incident["cause"]),
        ("Messages", ", ".join(incident["messages"]) or "-"),
        ("Recipients", ", ".join(incident["recipients"]) or "-"),
        ("Quarantine id", incident.get("quarantine_id") or "-"),
        ("Data categories", ", ".join(incident["data_categories"]) or "-"),
        ("Data subjects", f"{incident['data_subjects_estimate']} (estimate: distinct CPR numbers)"),
        ("Likely consequences", incident["likely_consequences"] or "-"),
        ("Remedial measures", incident["remedial_measures"] or "-"),
        ("Datatilsynet notified", ("yes, " + format_time(incident["datatilsynet_notified_at"]))
         if incident["datatilsynet_notified"] else "no"),
        ("Notes", incident.get("notes") or "-"),
    ]
    for label, value in labels:
        print(f"{label:<22}{value}")
    for change in incident["history"]:
        print(f"  {format_time(change['at'])} {change['operator']} set {change['field']}: "
              f"{change['old']!r} -> {change['new']!r}")


def run_show(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        incident = store.incident(args.id)
    finally:
        store.close_sync()
    if incident is None:
        raise CommandError(f"no incident {args.id}")
    if wants_json(args):
        print_json({**incident, "deadline_state": deadline_state(incident)})
    else:
        print_incident(incident)
    return 0


def _values(args: argparse.Namespace) -> dict[str, str | None]:
    return {field.name: getattr(args, field.name) for field in FIELDS}


def run_update(args: argparse.Namespace) -> int:
    try:
        changes = changes_from(_values(args))
    except AuditError as exc:
        raise CommandError(str(exc))
    if not changes:
        raise CommandError("nothing to update: give at least one field, e.g. --remedial-measures TEXT")
    store = open_store(args)
    try:
        incident = store.update_incident(args.id, operator=operator_name(args.operator), changes=changes)
    except AuditError as exc:
        raise CommandError(str(exc))
    finally:
        store.close_sync()
    if wants_json(args):
        print_json(incident)
    else:
        print_incident(incident)
    return 0


def run_open(args: argparse.Namespace) -> int:
    try:
        fields = changes_from(_values(args))
    except AuditError as exc:
        raise CommandError(str(exc))
    if not fields.get("what_happened"):
        raise CommandError("an incident needs --what-happened TEXT")
    store = open_store(args)
    try:
        categories: set[str] = set()
        subjects = 0
        for message in args.message:
            record = store.record(message)
            if record is None:
                raise CommandError(f"no audit record {message}")
            categories.update(data_categories(record["classification"]))
            # Summed: the distinct numbers of each message are counted, not kept, so one person
            # named in two messages counts twice -- an estimate on the safe side (art. 33(3)(a)).
            subjects += data_subjects_estimate(record["classification"])
        if args.message:
            fields.setdefault("data_categories", sorted(categories))
            fields.setdefault("data_subjects_estimate", subjects)
        fields["messages"] = list(args.message)
        incident = store.open_incident(operator=operator_name(args.operator), fields=fields)
    except AuditError as exc:
        raise CommandError(str(exc))
    finally:
        store.close_sync()
    if wants_json(args):
        print_json(incident)
    else:
        print_incident(incident)
    return 0
