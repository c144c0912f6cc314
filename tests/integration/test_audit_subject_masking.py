"""The subject, when `[audit] include_subject` keeps it, never holds a CPR number, an IBAN or a card number."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.audit import open_audit
from gateway.config import load_config
from gateway.events import MessageAccepted
from policy.financial import mask_financial

SUBJECT = ("Løn: konto DK5000400440116243, kort 4111 1111 1111 1111 og 5019-7170-1010-3742, "
           "CPR 010190-1234, sag 2026-17")


def test_stored_subject_masks_cpr_iban_and_card_numbers(tmp_path: Path) -> None:
    config = tmp_path / "sikkermail.toml"
    config.write_text('[spool]\npath = "var/spool"\n[audit]\ndatabase = "sqlite:///var/audit.db"\n'
                      'include_subject = true\n')
    store = open_audit(load_config(config))
    try:
        store.append_sync(MessageAccepted("M1", 1_780_000_000.0, "<m1@firm.test>", "a@firm.test", 10,
                                          ("b@x.test",), "127.0.0.1", SUBJECT))
        record = store.record("M1")
        assert record is not None
        stored = json.dumps(record, ensure_ascii=False)
        subject = record["subject"]
        for clear in ("DK5000400440116243", "0040 0440", "4111 1111 1111 1111", "5019-7170-1010",
                      "010190-1234"):
            assert clear not in stored, clear
        assert "DK50xxxx" in subject and "xxxx-xxxx-xxxx-1111" in subject and "xxxx-xxxx-xxxx-3742" in subject
        assert "010190-xxxx" in subject and subject.startswith("Løn: konto ") and subject.endswith("sag 2026-17")
        assert store.verify().ok
    finally:
        store.close_sync()


def test_masking_leaves_ordinary_numbers_alone() -> None:
    text = "Faktura 12345678, tlf. 20304050, dato 2026-11-30"
    assert mask_financial(text) == text
