"""Builds the RFC 5322 e-mail for a message: UTF-8 text (and HTML alternative), stable headers.

Every header that identifies the message is derived from what was stored when it was queued
(Message-ID from the idempotency key, Date from the queueing time), so a resend after a crash is
byte-for-byte the same message and the receiver can recognise the duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

from services.notify.domain.templates import Rendered


@dataclass(frozen=True)
class Envelope:
    """Who and how: everything except the content."""

    mail_from: str
    recipient: str
    recipient_name: str
    message_id_header: str
    date: datetime
    language: str
    reference: str = ""
    reply_to: str = ""
    auto_generated: bool = True


def sender_domain(mail_from: str) -> str:
    local, at, domain = parseaddr(mail_from)[1].rpartition("@")
    return domain if local and at and domain else "bibliodesk.invalid"


def compose(envelope: Envelope, content: Rendered) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = envelope.mail_from
    name = " ".join(envelope.recipient_name.split())
    msg["To"] = formataddr((name, envelope.recipient)) if name else envelope.recipient
    if envelope.reply_to:
        msg["Reply-To"] = envelope.reply_to
    msg["Subject"] = content.subject
    msg["Date"] = format_datetime(envelope.date)
    msg["Message-ID"] = envelope.message_id_header
    if envelope.auto_generated:
        # RFC 3834: notices are automatic, so vacation responders must not answer them.
        msg["Auto-Submitted"] = "auto-generated"
    if envelope.reference:
        msg["X-Bibliodesk-Reference"] = envelope.reference
    msg.set_content(content.body_text, charset="utf-8")
    if content.body_html:
        msg.add_alternative(content.body_html, subtype="html", charset="utf-8")
    msg["Content-Language"] = envelope.language  # after the body: set_content drops Content-* headers
    return msg


def plain_address(value: str) -> str:
    """The bare address of an e-mail (for the SMTP envelope)."""
    return parseaddr(value)[1]


def valid_address(value: str) -> bool:
    try:
        address = Address(addr_spec=value)
    except Exception:
        return False
    return bool(address.username and "." in address.domain)
