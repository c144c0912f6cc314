"""`sikkermail log search / show / verify`: the per-message audit log."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.audit import (
    AuditError,
    AuditStore,
    SearchFilter,
    canonical,
    format_time,
    open_audit,
    parse_time,
)
from gateway.commands import CommandError, common_options, load, print_json, wants_json
from gateway.events import RecipientStatus
from policy.model import Level, Protection


def register(sub: Any) -> None:
    p = sub.add_parser("log", parents=[common_options()], help="the per-message audit log")
    commands = p.add_subparsers(dest="log_command", metavar="SUBCOMMAND")
    commands.required = True

    search = commands.add_parser("search", parents=[common_options()], help="find audit records")
    search.add_argument("--since", help="from this time (2026-11-01, 2026-11-01T08:30, 3d)")
    search.add_argument("--until", help="until this time; a bare date includes the whole day")
    search.add_argument("--sender", help="sender address contains this")
    search.add_argument("--recipient", help="a recipient address contains this")
    search.add_argument("--level", choices=[v.value for v in Level])
    search.add_argument("--protection", choices=[v.value for v in Protection])
    search.add_argument("--status", choices=[v.value for v in RecipientStatus])
    search.add_argument("--limit", type=int, default=None)
    search.add_argument("--jsonl", action="store_true", help="one JSON record per line (SIEM export)")
    search.set_defaults(run=run_search)

    show = commands.add_parser("show", parents=[common_options()], help="one audit record")
    show.add_argument("id")
    show.set_defaults(run=run_show)

    verify = commands.add_parser("verify", parents=[common_options()], help="check the hash chain")
    verify.add_argument("--expect-head", metavar="HASH", default=None,
                        help="a head hash written down earlier (from `log verify`), as HASH or EVENTS:HASH: "
                             "fails unless the chain still contains it (catches a rebuilt chain)")
    verify.set_defaults(run=run_verify)


def open_store(args: argparse.Namespace) -> AuditStore:
    try:
        return open_audit(load(args))
    except AuditError as exc:
        raise CommandError(str(exc))


def run_search(args: argparse.Namespace) -> int:
    try:
        flt = SearchFilter(
            since=parse_time(args.since) if args.since else None,
            until=parse_time(args.until, end=True) if args.until else None,
            sender=args.sender, recipient=args.recipient, level=args.level,
            protection=args.protection, status=args.status, limit=args.limit,
        )
    except AuditError as exc:
        raise CommandError(str(exc))
    store = open_store(args)
    try:
        records = store.search(flt)
    finally:
        store.close_sync()
    if args.jsonl:
        for record in records:
            sys.stdout.write(canonical(record) + "\n")
    elif wants_json(args):
        print_json(records)
    else:
        print_table(records)
    return 0


def print_table(records: list[dict[str, Any]]) -> None:
    rows = [("RECEIVED", "ID", "LEVEL", "SENDER", "RECIPIENT", "PROTECTION", "STATUS")]
    for record in records:
        level = (record.get("classification") or {}).get("level") or "-"
        for entry in record["recipients"] or [{"address": "-", "protection": None, "status": "-"}]:
            rows.append((format_time(record["received_at"]), record["id"], level, record["sender"] or "-",
                         entry["address"], entry["protection"] or "-", entry["status"]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"{len(records)} message(s)")


def run_show(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        record = store.record(args.id)
        incidents = [store.incident(i) for i in record["incidents"]] if record else []
    finally:
        store.close_sync()
    if record is None:
        raise CommandError(f"no audit record {args.id}")
    if wants_json(args):
        print_json(record)
        return 0
    classification = record.get("classification") or {}
    print(f"Record       {record['id']}")
    print(f"Received     {format_time(record['received_at'])}")
    print(f"Message-ID   {record['message_id'] or '-'}")
    print(f"Sender       {record['sender']}   size {record['size']} bytes")
    if "subject" in record:
        print(f"Subject      {record['subject']}")
    print(f"Level        {classification.get('level', '-')}"
          + (f"   marking {classification['marking']}" if classification.get("marking") else ""))
    for evidence in classification.get("evidence", []):
        samples = ", ".join(evidence.get("samples", []))
        print(f"  evidence   {evidence['detector']} x{evidence['count']} ({evidence['level']})"
              + (f": {samples}" if samples else "") + f" in {', '.join(evidence.get('where', [])) or '-'}")
    print(f"Policy rule  {record['policy_rule'] or '-'}")
    for entry in record["recipients"]:
        print(f"Recipient    {entry['address']}")
        print(f"  decision   {entry['action'] or '-'} {entry['protection'] or ''}  status {entry['status']}"
              f"  at {format_time(entry['updated_at'])}")
        if entry.get("reason"):
            print(f"  why        {entry['reason']}")
        if entry.get("certificate"):
            cert = entry["certificate"]
            print(f"  cert       {cert['subject']} / {cert['issuer']} serial {cert['serial']} ({cert['source']})")
            print(f"  sha256     {cert['sha256']}   cipher {entry.get('cipher') or '-'}")
        if entry.get("smime"):
            sm = entry["smime"]
            signed = f"signed {sm['digest']}" if sm.get("signed") else "not signed"
            print(f"  s/mime     {sm['recipient_infos']} recipient infos, {signed}, headers "
                  f"{'protected' if sm.get('headers_protected') else 'not protected'}")
            for org in sm.get("organisation") or []:
                print(f"  also to    {org['subject']} sha256 {org['sha256']} (organisation)")
        if entry.get("tls"):
            tls = entry["tls"]
            print(f"  tls        {tls['mx']} {tls['version'] or 'NO TLS'} {tls['cipher'] or ''}"
                  f" {'verified' if tls['verified'] else 'unverified'}")
            if tls.get("verification"):  # absent in records written before it was kept
                print(f"  checked    {tls['verification']}")
        if entry.get("smtp_response"):
            print(f"  response   {entry['smtp_response']}")
        if entry.get("quarantine_id"):
            print(f"  quarantine {entry['quarantine_id']}")
    for action in record["operator_actions"]:
        print(f"Operator     {format_time(action['at'])} {action['action']} by {action['operator']}: "
              f"{action['reason']} {json.dumps(action['details'], ensure_ascii=False) if action['details'] else ''}")
    for incident in incidents:
        if incident:
            print(f"Incident     {incident['id']} ({incident['status']}) {incident['what_happened']}")
    print(f"prev_hash    {record['prev_hash']}")
    print(f"hash         {record['hash']}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        result = store.verify(expect_head=args.expect_head)
    except AuditError as exc:
        raise CommandError(str(exc))
    finally:
        store.close_sync()
    first = result.problems[0] if result.problems else None
    if wants_json(args):
        print_json({
            "ok": result.ok, "events": result.events, "head_hash": result.head_hash,
            "first_broken_record": first.record if first else None,
            "problems": [{"seq": p.seq, "record": p.record, "what": p.what} for p in result.problems],
        })
    elif first is None:
        # The head hash is printed so it can be written down elsewhere: anchored outside
        # the database, it also proves that nobody rebuilt the whole chain.
        print(f"ok: {result.events} events, chain intact, head {result.head_hash}")
    else:
        where = f" (event {first.seq})" if first.seq is not None else ""
        print(f"BROKEN: first broken record {first.record or '-'}{where}: {first.what}")
        for problem in result.problems[1:]:
            where = f" (event {problem.seq})" if problem.seq is not None else ""
            print(f"  also: {problem.record or '-'}{where}: {problem.what}")
    return 0 if result.ok else 1
