"""Reading and writing the notify tables; the only module that knows their columns."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from services.notify.domain.errors import InvalidInput
from services.notify.domain.messages import PENDING, DeliveryState, MessageStatus
from services.notify.domain.templates import Template

from . import tables as t


@dataclass
class MessageRecord:
    id: str
    request_id: str
    fingerprint: str
    patron_id: str
    template_key: str
    language: str
    reference: str
    recipient: str
    recipient_name: str
    subject: str
    body_text: str
    body_html: str
    message_id_header: str
    auto_generated: bool
    created_at: datetime
    updated_at: datetime
    requested_by: str
    has_secrets: bool
    sealed_content: bytes | None
    delivery: DeliveryState = field(default_factory=DeliveryState)
    locked_until: datetime | None = None

    @property
    def secrets_wiped(self) -> bool:
        return self.has_secrets and self.sealed_content is None


# --- templates -----------------------------------------------------------------------------------


def _template(row: Any) -> Template:
    return Template(
        event_key=row.event_key,
        language=row.language,
        subject=row.subject,
        body_text=row.body_text,
        body_html=row.body_html or "",
        description=row.description or "",
        built_in=bool(row.built_in),
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def get_template(session: Session, event_key: str, language: str) -> Template | None:
    row = session.execute(
        select(t.templates).where(t.templates.c.event_key == event_key, t.templates.c.language == language)
    ).first()
    return _template(row) if row else None


def templates_for(session: Session, event_key: str) -> list[Template]:
    rows = session.execute(
        select(t.templates).where(t.templates.c.event_key == event_key).order_by(t.templates.c.language)
    )
    return [_template(r) for r in rows]


def event_keys(session: Session) -> list[str]:
    c = t.templates.c
    return [row[0] for row in session.execute(select(c.event_key).distinct().order_by(c.event_key))]


def list_templates(
    session: Session, event_key: str, language: str, after: tuple[str, str] | None, limit: int
) -> list[Template]:
    c = t.templates.c
    query = select(t.templates).order_by(c.event_key, c.language).limit(limit)
    if event_key:
        query = query.where(c.event_key == event_key)
    if language:
        query = query.where(c.language == language)
    if after:
        query = query.where(or_(c.event_key > after[0], and_(c.event_key == after[0], c.language > after[1])))
    return [_template(r) for r in session.execute(query)]


def insert_template(session: Session, template: Template, now: datetime, actor: str) -> None:
    session.execute(
        insert(t.templates).values(
            event_key=template.event_key,
            language=template.language,
            subject=template.subject,
            body_text=template.body_text,
            body_html=template.body_html,
            description=template.description,
            built_in=template.built_in,
            version=1,
            created_at=now,
            updated_at=now,
            updated_by=actor,
        )
    )


def update_template(
    session: Session, template: Template, expected_version: int, now: datetime, actor: str
) -> bool:
    """Compare-and-set on the version: False if somebody else changed it first."""
    c = t.templates.c
    result = session.execute(
        update(t.templates)
        .where(
            c.event_key == template.event_key, c.language == template.language, c.version == expected_version
        )
        .values(
            subject=template.subject,
            body_text=template.body_text,
            body_html=template.body_html,
            description=template.description,
            version=expected_version + 1,
            updated_at=now,
            updated_by=actor,
        )
    )
    return bool(cast(CursorResult[Any], result).rowcount)


def delete_template(session: Session, event_key: str, language: str, expected_version: int) -> bool:
    c = t.templates.c
    result = session.execute(
        delete(t.templates).where(
            c.event_key == event_key, c.language == language, c.version == expected_version
        )
    )
    return bool(cast(CursorResult[Any], result).rowcount)


# --- messages ------------------------------------------------------------------------------------


def _message(row: Any) -> MessageRecord:
    return MessageRecord(
        id=row.id,
        request_id=row.request_id,
        fingerprint=row.fingerprint,
        patron_id=row.patron_id,
        template_key=row.template_key or "",
        language=row.language,
        reference=row.reference or "",
        recipient=row.recipient,
        recipient_name=row.recipient_name or "",
        subject=row.subject,
        body_text=row.body_text,
        body_html=row.body_html or "",
        message_id_header=row.message_id_header,
        auto_generated=bool(row.auto_generated),
        created_at=row.created_at,
        updated_at=row.updated_at,
        requested_by=row.requested_by or "",
        has_secrets=bool(row.has_secrets),
        sealed_content=row.sealed_content,
        delivery=DeliveryState(
            status=MessageStatus(row.status),
            attempts=row.attempts,
            last_error=row.last_error or "",
            next_attempt_at=row.next_attempt_at,
            sent_at=row.sent_at,
            finished_at=row.finished_at,
        ),
        locked_until=row.locked_until,
    )


def insert_message(session: Session, m: MessageRecord) -> None:
    d = m.delivery
    session.execute(
        insert(t.messages).values(
            id=m.id,
            request_id=m.request_id,
            fingerprint=m.fingerprint,
            patron_id=m.patron_id,
            template_key=m.template_key,
            language=m.language,
            reference=m.reference,
            recipient=m.recipient,
            recipient_name=m.recipient_name,
            subject=m.subject,
            body_text=m.body_text,
            body_html=m.body_html,
            message_id_header=m.message_id_header,
            auto_generated=m.auto_generated,
            status=d.status.value,
            attempts=d.attempts,
            last_error=d.last_error,
            next_attempt_at=d.next_attempt_at,
            sent_at=d.sent_at,
            finished_at=d.finished_at,
            created_at=m.created_at,
            updated_at=m.updated_at,
            requested_by=m.requested_by,
            has_secrets=m.has_secrets,
            sealed_content=m.sealed_content,
        )
    )


def save_delivery(session: Session, m: MessageRecord, now: datetime, *, wipe_secrets: bool) -> None:
    d = m.delivery
    values: dict[str, Any] = {
        "status": d.status.value,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "next_attempt_at": d.next_attempt_at,
        "sent_at": d.sent_at,
        "finished_at": d.finished_at,
        "locked_until": None,
        "updated_at": now,
    }
    if wipe_secrets:
        values["sealed_content"] = None
        m.sealed_content = None
    session.execute(update(t.messages).where(t.messages.c.id == m.id).values(**values))


def update_recipient(session: Session, message_id: str, recipient: str, recipient_name: str) -> None:
    session.execute(
        update(t.messages)
        .where(t.messages.c.id == message_id)
        .values(recipient=recipient, recipient_name=recipient_name)
    )


def stored_answer_exists(session: Session, method: str, request_id: str) -> bool:
    key = f"{method}:{request_id}"
    c = t.idempotency_keys.c
    return session.execute(select(c.key).where(c.key == key)).first() is not None


def get_message(session: Session, message_id: str, *, for_update: bool = False) -> MessageRecord | None:
    query = select(t.messages).where(t.messages.c.id == message_id)
    if for_update and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    row = session.execute(query).first()
    return _message(row) if row else None


def message_by_request_id(session: Session, request_id: str) -> MessageRecord | None:
    row = session.execute(select(t.messages).where(t.messages.c.request_id == request_id)).first()
    return _message(row) if row else None


def encode_cursor(created_at: datetime, message_id: str) -> str:
    raw = f"{created_at.isoformat()}|{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        when, _, message_id = raw.partition("|")
        return datetime.fromisoformat(when), message_id
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInput("is not a token returned by a previous page", field="page_token") from None


def list_messages(
    session: Session,
    *,
    patron_id: str,
    reference: str,
    status: MessageStatus | None,
    template_key: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[MessageRecord]:
    c = t.messages.c
    query = select(t.messages).order_by(c.created_at.desc(), c.id.desc()).limit(limit)
    if patron_id:
        query = query.where(c.patron_id == patron_id)
    if reference:
        query = query.where(c.reference == reference)
    if status is not None:
        query = query.where(c.status == status.value)
    if template_key:
        query = query.where(c.template_key == template_key)
    if after:
        query = query.where(or_(c.created_at < after[0], and_(c.created_at == after[0], c.id < after[1])))
    return [_message(r) for r in session.execute(query)]


def claim_due(session: Session, now: datetime, lease: timedelta, limit: int) -> list[MessageRecord]:
    """Leases due messages to one worker; a worker that dies loses its lease and another resends."""
    c = t.messages.c
    query = (
        select(t.messages)
        .where(c.status.in_([s.value for s in PENDING]), c.next_attempt_at <= now)
        .where(or_(c.locked_until.is_(None), c.locked_until < now))
        .order_by(c.next_attempt_at, c.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    found = [_message(r) for r in session.execute(query)]
    if found:
        session.execute(
            update(t.messages).where(c.id.in_([m.id for m in found])).values(locked_until=now + lease)
        )
    return found


def still_leased_by_us(session: Session, message_id: str, locked_until: datetime) -> bool:
    c = t.messages.c
    row = session.execute(select(c.locked_until).where(c.id == message_id)).first()
    return bool(row and row.locked_until == locked_until)


def record_attempt_row(
    session: Session,
    message_id: str,
    started_at: datetime,
    finished_at: datetime,
    outcome: str,
    detail: str,
    before: MessageStatus,
    after: MessageStatus,
    reason: str,
) -> None:
    c = t.delivery_attempts.c
    done = session.execute(select(func.count()).where(c.message_id == message_id)).scalar_one()
    session.execute(
        insert(t.delivery_attempts).values(
            message_id=message_id,
            number=int(done) + 1,  # counts across staff retries, unlike the message's attempt budget
            started_at=started_at,
            finished_at=finished_at,
            outcome=outcome,
            detail=detail[:2000],
            status_before=before.value,
            status_after=after.value,
            reason=reason,
        )
    )


def attempts_of(session: Session, message_id: str) -> list[Any]:
    c = t.delivery_attempts.c
    return list(
        session.execute(select(t.delivery_attempts).where(c.message_id == message_id).order_by(c.number))
    )


def record_event(
    session: Session,
    message_id: str,
    at: datetime,
    before: MessageStatus,
    after: MessageStatus,
    reason: str,
    actor: str,
) -> None:
    session.execute(
        insert(t.message_events).values(
            message_id=message_id,
            at=at,
            status_before=before.value,
            status_after=after.value,
            reason=reason,
            actor=actor,
        )
    )


def wipe_stale_secrets(session: Session) -> int:
    """Safety net: no sealed content survives on a message that is no longer waiting for delivery."""
    c = t.messages.c
    result = session.execute(
        update(t.messages)
        .where(c.sealed_content.is_not(None), c.status.not_in([s.value for s in PENDING]))
        .values(sealed_content=None)
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


def count_in_status(session: Session, status: MessageStatus) -> int:
    c = t.messages.c
    return int(session.execute(select(func.count()).where(c.status == status.value)).scalar_one())
