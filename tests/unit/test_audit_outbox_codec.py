"""Audit events survive the trip through the outbox's JSON unchanged (gateway.events codec)."""

from __future__ import annotations

import json

from gateway.events import (
    MessageAccepted,
    MessageClassified,
    RecipientDecided,
    RecipientStatus,
    RecipientUpdated,
    TlsSession,
    event_from_plain,
    event_to_plain,
)
from policy.model import (
    Action,
    CertificateRef,
    Classification,
    Decision,
    Evidence,
    Level,
    Protection,
    Step,
)


def test_every_event_kind_comes_back_equal_from_json() -> None:
    events = [
        MessageAccepted("M1", 1.5, "<a@b>", "s@firm.test", 123, ("r@x.test",), "127.0.0.1", None),
        MessageClassified("M1", 2.0, Classification(
            Level.CONFIDENTIAL, (Evidence("cpr", Level.CONFIDENTIAL, 7, ("010190-xxxx",), ("body",), 6),),
            "[fortrolig]", True, ("attachment:x.zip: encrypted",))),
        RecipientDecided("M1", 3.0, Decision("r@x.test", Level.CONFIDENTIAL, Action.SEND, Protection.SMIME,
                                              "level:confidential",
                                              (Step(Protection.SMIME, True, "found"), Step(None, None, "?"))),
                         CertificateRef("CN=r", "CN=ca", "0a", "ff", "ldap:oces"), "aes256-cbc/rsa-oaep"),
        RecipientUpdated("M1", 4.0, "r@x.test", RecipientStatus.DELIVERED, "250 ok",
                         TlsSession("mx.x.test", "TLSv1.3", "TLS_AES_256_GCM_SHA384", True), None),
        RecipientUpdated("M1", 5.0, "q@x.test", RecipientStatus.QUARANTINED, "held", None, "Q0123456789ABCDEF"),
    ]
    for event in events:
        assert event_from_plain(json.loads(json.dumps(event_to_plain(event)))) == event
