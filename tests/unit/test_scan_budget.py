"""One message, one budget: nested archives and full text stop extraction, fail closed."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from typing import Any, cast

from gateway.pipeline import Pipeline, PolicyHolder
from gateway.spool import Envelope
from policy.classify import classify_message
from policy.model import Level
from policy.policyfile import Policy
from tests.corpus.build import Attachment, Case, build_message, make_docx, make_zip

WORDS = ("kommune", "byggesag", "tegning", "skel", "carport", "ansøgning", "afgørelse", "uge")


def _prose(size: int, seed: int) -> bytes:
    rng = random.Random(seed)  # shuffled words: compresses like documents, not like zeros
    return " ".join(rng.choices(WORDS, k=size // 8)).encode()[:size]


def _policy(**limits: Any) -> Policy:
    policy = Policy.builtin()
    return replace(policy, limits=replace(policy.limits, **limits))


def _nested_archives() -> bytes:
    inner = [make_zip({f"del{i}.txt": _prose(300_000, i)}) for i in range(3)]
    last = make_zip({"sag.txt": b"Borgerens CPR-nr. 010190-1234 og diagnose."})
    outer = make_zip({"a.zip": inner[0], "b.zip": inner[1], "c.zip": inner[2], "d.zip": last})
    return build_message(Case("x", "confidential", "Bilag", "Bilag vedhæftet.",
                              attachments=(Attachment("bilag.zip", outer),)))


def test_nested_archives_past_the_message_budget_are_not_read_and_fail_closed() -> None:
    raw = _nested_archives()
    # each archive is well inside the per-archive limits; together they are not
    result = classify_message(raw, _policy(max_expanded=800_000))
    spent = [r for r in result.unscannable if "budget spent" in r]
    assert spent, result.unscannable
    assert any("d.zip" in r for r in spent)  # the last archive was never opened
    assert result.level is Level.CONFIDENTIAL
    assert not any(e.detector == "cpr" for e in result.evidence)  # its text was not scanned
    # with room for everything the same message is read to the end
    full = classify_message(raw, _policy())
    assert not [r for r in full.unscannable if "budget spent" in r]
    assert any(e.detector == "cpr" for e in full.evidence)


def test_once_the_text_budget_is_spent_later_attachments_are_not_extracted() -> None:
    document = make_docx("Patienten har fået diagnosen depression og er sygemeldt; "
                         "psykiatrisk behandling og medicin.")
    raw = build_message(Case("x", "confidential", "Sag", "Lang tekst. " * 400,
                             attachments=(Attachment("journal.docx", document),)))
    result = classify_message(raw, _policy(max_text=2000))
    assert any("journal.docx" in r and "budget spent" in r for r in result.unscannable)
    assert result.level is Level.CONFIDENTIAL  # unscannable, not the docx's sensitive words
    assert classify_message(raw, _policy()).level is Level.SENSITIVE


def test_a_classification_past_its_time_is_unscannable_confidential() -> None:
    raw = build_message(Case("x", "public", "Tal", "Faktura 2026-1001 Varenr 8629-8402\n" * 200_000))
    policy = _policy(max_seconds=0.001)
    pipeline = Pipeline(cast(Any, None), PolicyHolder(policy), cast(Any, None))
    envelope = Envelope("m1", "a@kommune.dk", ("b@example.dk",), 0.0)
    result = asyncio.run(pipeline.classify(envelope, raw))
    assert result.level is Level.CONFIDENTIAL and not result.scanned
    assert any("budget spent" in r and "within" in r for r in result.unscannable)
    # the same message classified in its own time is public
    assert classify_message(raw, policy).level is Level.PUBLIC
