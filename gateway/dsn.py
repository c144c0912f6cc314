"""Delivery status notifications (RFC 3464) for recipients that failed permanently.

The human part is Danish first, then English, as the senders are Danish
organisations. The original's headers are returned (text/rfc822-headers), never
its body: the body may be the very content the gateway exists to protect.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import cast


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    response: str  # "550 5.1.1 user unknown" or our own reason with a status code
    remote_mta: str | None = None


_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def enhanced_status(response: str) -> str:
    match = _STATUS.search(response)
    return match.group(0) if match else "5.0.0"


def build_dsn(
    *,
    original_id: str,
    sender: str,
    failed: list[FailedRecipient],
    original_headers: bytes,
    reporting_mta: str,
    from_address: str,
    arrival: float,
    now: float | None = None,
) -> bytes:
    now = time.time() if now is None else now
    report = EmailMessage(policy=SMTP)
    report["From"] = f"Mail Delivery System <{from_address}>"
    report["To"] = sender
    report["Subject"] = "Ikke leveret / Undelivered Mail Returned to Sender"
    report["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    report["Message-ID"] = make_msgid(domain=reporting_mta)
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834: no auto-replies to this
    lines_da = [f"  {f.address}: {f.response}" for f in failed]
    text = (
        "Din besked kunne ikke leveres til følgende modtagere, og gatewayen har opgivet:\n\n"
        + "\n".join(lines_da)
        + f"\n\nBeskedens id i gatewayen: {original_id}\n"
        "Kontakt din IT-afdeling, hvis du er i tvivl om årsagen.\n\n"
        "--\n\n"
        "Your message could not be delivered to the following recipients, and the gateway has given up:\n\n"
        + "\n".join(lines_da)
        + f"\n\nGateway message id: {original_id}\n"
        "Contact your IT department if the reason is unclear.\n"
    )
    report.set_content(text, charset="utf-8")
    report.make_mixed()
    report.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"')
    # message/delivery-status is a sequence of header blocks (RFC 3464 §2.1):
    # one per message, then one per recipient.
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {reporting_mta}"
    per_message["X-Sikkermail-Queue-ID"] = original_id
    per_message["Arrival-Date"] = format_datetime(datetime.fromtimestamp(arrival, UTC))
    blocks: list[Message | str] = [per_message]
    for f in failed:
        block = Message()
        block["Final-Recipient"] = f"rfc822; {f.address}"
        block["Action"] = "failed"
        block["Status"] = enhanced_status(f.response)
        if f.remote_mta:
            block["Remote-MTA"] = f"dns; {f.remote_mta}"
        block["Diagnostic-Code"] = f"smtp; {_one_line(f.response)}"
        blocks.append(block)
    status = Message()
    status.set_type("message/delivery-status")
    status.set_payload(blocks)
    report.attach(cast(EmailMessage, status))  # a legacy Message part: attach() takes either at run time
    headers = Message()
    headers.set_type("text/rfc822-headers")
    # Raw 8-bit header bytes (RFC 6532) go back as they came: surrogateescape makes
    # the generator write the original bytes rather than re-encode them.
    headers.set_payload(original_headers.decode("ascii", "surrogateescape"))
    if any(b > 127 for b in original_headers):
        headers["Content-Transfer-Encoding"] = "8bit"
    report.attach(cast(EmailMessage, headers))
    # Unfolded up to RFC 5322's 998, as Postfix writes DSNs: the email package folds a
    # Diagnostic-Code that just misses 78 columns right after the colon, which readers
    # (Python's own parser among them) then report with a leading blank.
    return report.as_bytes(policy=SMTP.clone(max_line_length=998))


def _one_line(text: str) -> str:
    return " ".join(text.split())[:900]


def header_block(data: bytes, limit: int = 64 * 1024) -> bytes:
    end = data.find(b"\r\n\r\n")
    block = data if end < 0 else data[: end + 2]
    return block[:limit]
