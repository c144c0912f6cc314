"""File names and reasons name attachments: no CPR, IBAN, card or account number in clear."""

from __future__ import annotations

import json

from gateway.audit import event_content
from gateway.events import MessageClassified
from policy.classify import classify_message
from policy.model import Classification, Evidence, Level
from policy.policyfile import Policy
from policy.redact import mask_numbers
from tests.corpus.build import Attachment, Case, build_message, make_zip

IBAN = "DK5000400440116243"
CARD = "4111 1111 1111 1111"
ACCOUNT = "1551-3253200123"
CPR = "010190-1234"
SECRETS = ("0040", "0440", "1162", "4111 1111", "3253200123", "1234")


def test_identifier_length_digit_sequences_are_masked() -> None:
    assert mask_numbers(f"kontoudtog {IBAN}.pdf") == "kontoudtog DKxxxxxxxxxxxxxxxx.pdf"
    assert mask_numbers(f"kort {CARD}.txt") == "kort xxxx xxxx xxxx xxxx.txt"
    assert mask_numbers(f"konto {ACCOUNT}.csv") == "konto xxxx-xxxxxxxxxx.csv"
    assert mask_numbers(f"{CPR} journal.docx") == "xxxxxx-xxxx journal.docx"
    assert mask_numbers("GB82 WEST 1234 5698 7654 32") == "GB82 WEST xxxx xxxx xxxx xx"


def test_dates_and_short_numbers_in_names_stay_readable() -> None:
    assert mask_numbers("referat 2026-03-01 lokale 12.pdf") == "referat 2026-03-01 lokale 12.pdf"
    assert mask_numbers("tlf 20 30 40 50") == "tlf 20 30 40 50"


def _message() -> bytes:
    archive = make_zip({f"kort {CARD}.txt": b"intet", f"{CPR}.txt": b"intet"}, encrypted=True)
    return build_message(Case("x", "confidential", "Bilag", "Se bilag.", attachments=(
        Attachment(f"kontoudtog {IBAN}.pdf", b"%PDF-1.4 not really a pdf"),
        Attachment(f"konto {ACCOUNT}.zip", archive),
    )))


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_where_and_unscannable_reasons_hold_no_identifier() -> None:
    result = classify_message(_message(), Policy.builtin())
    assert result.unscannable  # the broken PDF and the encrypted members are named
    places = [w for e in result.evidence for w in e.where] + list(result.unscannable)
    assert any("kontoudtog" in p for p in places) and any("konto xxxx" in p for p in places)
    assert _leaks(" ".join(places)) == []
    assert _leaks(" ".join(s for e in result.evidence for s in e.samples)) == []


def test_the_audit_record_masks_where_and_reasons_it_is_given() -> None:
    # a classification built elsewhere (explain, an older version) is masked at the audit too
    evidence = Evidence("unscannable", Level.CONFIDENTIAL, 1, (f"attachment:{IBAN}.pdf: encrypted",),
                        (f"attachment:kort {CARD}.pdf",))
    classification = Classification(Level.CONFIDENTIAL, (evidence,),
                                    unscannable=(f"attachment:{ACCOUNT}.zip: encrypted",))
    _kind, _id, _at, data = event_content(MessageClassified("m1", 0.0, classification), False)
    stored = json.dumps(data, ensure_ascii=False)
    assert _leaks(stored) == [] and "attachment:" in stored
