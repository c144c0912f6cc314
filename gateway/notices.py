"""The notice a sender gets when recipients of their message were held or blocked.

Danish first, then English, plain text (every client renders it, nothing to
phish with). It says which recipients, why, what the sender can do, and the
quarantine id to quote to IT. It never carries the content: no body, no
attachment, no evidence sample; the original subject only when the caller
passes it (`[quarantine] notice_subject`), because a subject can itself be the
sensitive part (GDPR art. 5(1)(c), data minimisation).
"""

from __future__ import annotations

import email.policy
import email.utils
import time
from email.message import EmailMessage

from gateway.audit import mask_identifiers
from gateway.spool import Envelope
from policy.model import Action, Decision, Protection

_KINDS = ("quarantine", "block")


def _why(decision: Decision) -> tuple[str, str]:
    """(Danish, English) for the usual causes; the decision's own reason follows as detail."""
    tried = {step.protection: step.possible for step in decision.steps if step.protection is not None}
    tls = [p for p in (Protection.TLS_VERIFIED, Protection.TLS_ENFORCED) if p in tried]
    if not tried:  # held by the queue, e.g. not delivered within max_age: never sent weaker
        return ("Beskeden kunne ikke leveres med den krævede beskyttelse inden for tidsfristen.",
                "The message could not be delivered with the required protection in time.")
    if Protection.SMIME in tried and not tls:
        return ("Politikken kræver krypteret e-mail (S/MIME) til denne modtager, og der blev ikke fundet "
                "et gyldigt certifikat.",
                "The policy requires encrypted e-mail (S/MIME) to this recipient, and no valid certificate "
                "was found.")
    if tried.get(Protection.SMIME) is False and all(tried[p] is False for p in tls):
        return ("Der blev ikke fundet et certifikat til modtageren, og modtagerens domæne understøtter ikke "
                "krypteret forbindelse (TLS) godt nok.",
                "No certificate was found for the recipient, and the recipient's domain does not support "
                "an encrypted connection (TLS) well enough.")
    if any(possible is None for possible in tried.values()):
        return ("Det kunne ikke afgøres, om beskyttet levering er mulig (opslag fejlede).",
                "It could not be established that protected delivery is possible (a lookup failed).")
    return ("Ingen af de beskyttelser, politikken tillader, var mulige.",
            "None of the protections the policy allows was possible.")


def build_notice(*, kind: str, envelope: Envelope, decisions: list[Decision], quarantine_id: str | None,
                 subject: str | None, from_address: str, hostname: str) -> bytes:
    """A complete RFC 5322 message to the envelope sender; `decisions` are the held/blocked ones."""
    if kind not in _KINDS:
        raise ValueError(f"notice kind must be one of {_KINDS}, not {kind!r}")
    affected = [d for d in decisions if d.action in (Action.QUARANTINE, Action.BLOCK)] or list(decisions)
    held = kind == "quarantine"
    lines: list[str] = []
    if held:
        lines += ["Din e-mail er tilbageholdt og er IKKE sendt til følgende modtagere:", ""]
    else:
        lines += ["Din e-mail er afvist og er IKKE sendt til følgende modtagere:", ""]
    english: list[str] = []
    english += ["Your e-mail was held and has NOT been sent to these recipients:" if held else
                "Your e-mail was refused and has NOT been sent to these recipients:", ""]
    for decision in affected:
        danish_why, english_why = _why(decision)
        detail = mask_identifiers(decision.reason)
        lines += [f"  {decision.recipient}", f"    Årsag: {danish_why}", f"    Detaljer: {detail}", ""]
        english += [f"  {decision.recipient}", f"    Reason: {english_why}", f"    Details: {detail}", ""]
    if subject is not None:
        lines.insert(1, f"Emne: {mask_identifiers(subject)}")
        english.insert(1, f"Subject: {mask_identifiers(subject)}")
    lines += ["Beskeden indeholder fortrolige eller følsomme personoplysninger, og må derfor kun sendes "
              "krypteret (databeskyttelsesforordningens art. 32).", "", "Det kan du gøre:"]
    english += ["The message contains confidential or sensitive personal data and may only be sent "
                "encrypted (GDPR art. 32).", "", "What you can do:"]
    lines += ["  - Bed modtageren om et OCES-/MitID Erhverv-certifikat til krypteret e-mail, eller om at "
              "deres it-afdeling aktiverer TLS på deres mailserver.",
              "  - Send oplysningerne ad en anden sikker vej (fx Digital Post eller en sikker portal)."]
    english += ["  - Ask the recipient for an OCES / MitID Erhverv certificate for encrypted e-mail, or ask "
                "their IT department to enable TLS on their mail server.",
                "  - Send the information another secure way (e.g. Digital Post or a secure portal)."]
    if held:
        lines += ["  - Kontakt din it-afdeling, hvis beskeden skal frigives; oplys karantæne-id "
                  f"{quarantine_id}. Beskeden slettes automatisk efter opbevaringsperioden."]
        english += ["  - Contact your IT department if the message must be released; quote quarantine id "
                    f"{quarantine_id}. The message is deleted automatically after the retention period."]
    else:
        lines += ["  - Fjern de følsomme oplysninger, eller send til en modtager, der kan modtage krypteret."]
        english += ["  - Remove the sensitive information, or send to a recipient who can receive it encrypted."]
    text = "\n".join([*lines, "", "-" * 60, "", *english]) + "\n"

    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = from_address
    message["To"] = envelope.sender
    prefix = "Tilbageholdt / Held" if held else "Afvist / Refused"
    title = f"{prefix}: e-mail ikke sendt / e-mail not sent"
    if subject is not None:
        title += f": {mask_identifiers(subject)}"
    message["Subject"] = title
    message["Date"] = email.utils.formatdate(time.time(), localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=hostname)
    # RFC 3834: an automatic reply; autoresponders must not answer it (no mail loops).
    message["Auto-Submitted"] = "auto-replied"
    message["X-Sikkermail-Notice"] = kind + (f"; quarantine-id={quarantine_id}" if quarantine_id else "")
    message["Content-Language"] = "da, en"
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    return message.as_bytes()
