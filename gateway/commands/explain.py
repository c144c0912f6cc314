"""`sikkermail explain FILE.eml --to ADDR`: a dry run of classification and decision.

Prints the level, the masked evidence, the rule applied and, per recipient, the
decision chain. Sends nothing. `--offline` decides with unknown facts (what the
gateway would do while directories and probes are unreachable: protected mail
waits).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from gateway.commands import CommandError, common_options, load, print_json, wants_json
from policy.classify import classify_message
from policy.decide import decide_choice, offline_facts
from policy.model import Classification, Decision, RecipientFacts
from policy.policyfile import Policy, PolicyError, RuleChoice, load_policy


def register(sub: Any) -> None:
    p = sub.add_parser("explain", parents=[common_options()],
                       help="dry run: classification with masked evidence and per-recipient decisions")
    p.add_argument("file", metavar="FILE.eml", help="the message (RFC 5322, as it would be sent)")
    p.add_argument("--to", dest="recipients", action="append", required=True, metavar="ADDR",
                   help="a recipient (repeat for several)")
    p.add_argument("--from", dest="sender", default=None, metavar="ADDR",
                   help="the envelope sender (default: the message's From: address)")
    p.add_argument("--offline", action="store_true",
                   help="no certificate lookups or TLS probes: facts are 'unknown'")
    p.add_argument("--policy", default=None, metavar="FILE",
                   help="use this policy file instead of the one the config names")
    p.set_defaults(run=run)


def _policy(args: argparse.Namespace) -> Policy:
    path = Path(args.policy) if args.policy else Path(load(args).policy.file)
    try:
        return load_policy(path)
    except PolicyError as exc:
        for problem in exc.problems[1:]:
            print(f"sikkermail: {problem}", file=sys.stderr)
        raise CommandError(str(exc.problems[0]))


def _sender(raw: bytes, explicit: str | None) -> str:
    if explicit is not None:
        return explicit
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:256 * 1024], headersonly=True)
    return parseaddr(str(headers.get("From", "")))[1]


async def _live_facts(args: argparse.Namespace, choices: list[tuple[str, RuleChoice]]
                      ) -> list[RecipientFacts]:
    from gateway.facts import FactGatherer  # the live lookups exist only in the gateway

    cfg = load(args)
    async with FactGatherer(cfg) as gatherer:
        return [await gatherer.gather(address, choice) for address, choice in choices]


def _classification_json(c: Classification) -> dict[str, Any]:
    return {
        "level": c.level.value,
        "marking": c.marking,
        "scanned": c.scanned,
        "evidence": [
            {"detector": e.detector, "level": e.level.value, "count": e.count,
             "samples": list(e.samples), "where": list(e.where), "distinct": e.distinct}
            for e in c.evidence
        ],
        "unscannable": list(c.unscannable),
    }


def _decision_json(d: Decision, choice: RuleChoice) -> dict[str, Any]:
    return {
        "address": d.recipient,
        "level": d.level.value,
        "rule": d.rule,
        "protections": [p.value for p in choice.protections],
        "fallback": choice.fallback.value,
        "action": d.action.value,
        "protection": d.protection.value if d.protection else None,
        "steps": [
            {"protection": s.protection.value if s.protection else None,
             "possible": s.possible, "reason": s.reason}
            for s in d.steps
        ],
    }


def _print_text(path: str, size: int, sender: str, c: Classification,
                decisions: list[tuple[Decision, RuleChoice]]) -> None:
    print(f"message: {path} ({size} bytes) from {sender or '<>'}")
    marking = f" (marked {c.marking})" if c.marking else ""
    print(f"level: {c.level}{marking}")
    if c.evidence:
        print("evidence:")
        for e in c.evidence:
            samples = ", ".join(e.samples)
            where = ", ".join(e.where)
            print(f"  {e.detector:<28} {e.level:<12} x{e.count:<4} {samples}  [in {where}]")
    else:
        print("evidence: none")
    if c.unscannable:
        print("unscannable:")
        for reason in c.unscannable:
            print(f"  {reason}")
    for d, choice in decisions:
        print(f"recipient {d.recipient}:")
        print(f"  level {d.level}, rule {d.rule}")
        allowed = ", ".join(choice.protections) or "(none)"
        print(f"  acceptable: {allowed}; if none possible: {choice.fallback}")
        for step in d.steps:
            mark = {True: "+", False: "-", None: "?"}[step.possible]
            print(f"    {mark} {step.reason}")
        outcome = f"send with {d.protection}" if d.protection else str(d.action)
        print(f"  => {outcome}")


def run(args: argparse.Namespace) -> int:
    try:
        raw = Path(args.file).read_bytes()
    except OSError as exc:
        raise CommandError(f"{args.file}: cannot read: {exc.strerror or exc}")
    policy = _policy(args)
    sender = _sender(raw, args.sender)
    classification = classify_message(raw, policy)
    choices = [(address, policy.choice_for(classification, sender, address))
               for address in args.recipients]
    if args.offline:
        facts = [offline_facts(address) for address, _choice in choices]
    else:
        facts = asyncio.run(_live_facts(args, choices))
    decisions = [(decide_choice(classification, choice, f), choice)
                 for (_address, choice), f in zip(choices, facts, strict=True)]
    if wants_json(args):
        print_json({
            "file": args.file,
            "size": len(raw),
            "sender": sender,
            "policy": policy.source,
            "classification": _classification_json(classification),
            "recipients": [_decision_json(d, choice) for d, choice in decisions],
        })
    else:
        _print_text(args.file, len(raw), sender, classification, decisions)
    return 0
