"""`sikkermail queue list | show ID | flush`: the outbound queue, read from the spool."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from gateway.commands import CommandError, common_options, load, print_json, wants_json
from gateway.journal import fold
from gateway.queue import FLUSH_REQUEST
from gateway.spool import Spool, SpoolError, State


def register(sub: Any) -> None:
    p = sub.add_parser("queue", parents=[common_options()], help="the outbound queue")
    qsub = p.add_subparsers(dest="queue_command", metavar="ACTION")
    qsub.required = True
    ls = qsub.add_parser("list", parents=[common_options()], help="messages waiting or in delivery")
    ls.add_argument("--all", action="store_true", help="include finished messages (done/)")
    ls.set_defaults(run=run_list)
    show = qsub.add_parser("show", parents=[common_options()], help="one message: envelope and per-recipient status")
    show.add_argument("id")
    show.set_defaults(run=run_show)
    flush = qsub.add_parser("flush", parents=[common_options()], help="retry every deferred message now")
    flush.set_defaults(run=run_flush)


def _summary(spool: Spool, state: State, message_id: str) -> dict[str, Any]:
    envelope = spool.envelope(message_id, state)
    folded = fold(envelope.recipients, spool.journal(message_id, state))
    return {
        "id": message_id,
        "state": state.value,
        "kind": envelope.kind.value,
        "received_at": envelope.received_at,
        "sender": envelope.sender,
        "level": folded.classification.level.value if folded.classification else None,
        "attempts": folded.attempts,
        "next_attempt": folded.next_attempt,
        "recipients": [
            {"address": r.address, "status": r.status.value, "protection": r.protection,
             "action": r.action, "reason": r.reason, "response": r.response}
            for r in folded.recipients.values()
        ],
    }


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def run_list(args: argparse.Namespace) -> int:
    spool = Spool(load(args).spool.path)
    states = [State.INCOMING, State.ACTIVE, State.DEFERRED] + ([State.DONE] if args.all else [])
    rows = [_summary(spool, state, mid) for state in states for mid in spool.ids(state)]
    if wants_json(args):
        print_json(rows)
        return 0
    print(f"{'ID':<22} {'STATE':<9} {'RECEIVED':<19} {'LEVEL':<12} {'SENDER':<30} RECIPIENTS")
    for row in rows:
        rcpts = ", ".join(f"{r['address']}({r['status']})" for r in row["recipients"])
        print(f"{row['id']:<22} {row['state']:<9} {_when(row['received_at']):<19} {row['level'] or '-':<12} "
              f"{row['sender'] or '<>':<30} {rcpts}")
    print(f"{len(rows)} message(s)", file=sys.stderr)
    return 0


def run_show(args: argparse.Namespace) -> int:
    spool = Spool(load(args).spool.path)
    try:
        state = spool.locate(args.id)
    except SpoolError as exc:
        raise CommandError(str(exc))
    row = _summary(spool, state, args.id)
    if wants_json(args):
        print_json(row)
        return 0
    print(f"id:        {row['id']}\nstate:     {row['state']}\nkind:      {row['kind']}\n"
          f"received:  {_when(row['received_at'])}\nsender:    {row['sender'] or '<>'}\n"
          f"level:     {row['level'] or '-'}\nattempts:  {row['attempts']}\nnext try:  {_when(row['next_attempt'])}")
    for r in row["recipients"]:
        print(f"  {r['address']}: {r['status']} ({r['protection'] or r['action'] or 'undecided'})")
        if r["reason"]:
            print(f"      decision: {r['reason']}")
        if r["response"]:
            print(f"      last response: {r['response']}")
    return 0


def run_flush(args: argparse.Namespace) -> int:
    spool = Spool(load(args).spool.path)
    if not spool.root.is_dir():
        raise CommandError(f"no spool at {spool.root}")
    (spool.root / FLUSH_REQUEST).touch()
    deferred = len(spool.ids(State.DEFERRED))
    print(f"flush requested: {deferred} deferred message(s) will be retried within a second by the running gateway")
    return 0
