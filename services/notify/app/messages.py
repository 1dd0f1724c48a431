"""Use cases on messages: send (N1, and every notice other services ask for), read the history (N2),
retry and cancel. Each write is one transaction."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bibliodesk.runtime.auth import Principal
from bibliodesk.runtime.clock import Clock
from bibliodesk.runtime.db import Database
from bibliodesk.runtime.errors import PermissionDenied
from bibliodesk.runtime.types import new_id
from services.notify.delivery.composer import sender_domain, valid_address
from services.notify.delivery.sealing import SecretBox
from services.notify.domain.errors import Conflict, InvalidInput, NotFound
from services.notify.domain.events import event_for
from services.notify.domain.messages import (
    DeliveryState,
    MessageStatus,
    RetryPolicy,
    Transition,
    message_id_header,
)
from services.notify.domain.templates import (
    LANGUAGES,
    Rendered,
    Renderer,
    Template,
    prepare_variables,
    render_pair,
    validate_event_key,
    validate_language,
)
from services.notify.store import repository as repo

from .contacts import ContactDirectory, PatronContact

log = logging.getLogger(__name__)

MAX_REQUEST_ID = 200
MAX_REFERENCE = 300
MAX_BODY = 100_000
MAX_VARIABLES = 100
MAX_VALUE = 10_000


@dataclass(frozen=True)
class NotifyConfig:
    mail_from: str
    reply_to: str = ""
    library_name: str = "Biblioteca"
    default_language: str = "it"
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def message_id_domain(self) -> str:
        return sender_domain(self.mail_from)


@dataclass
class SendCommand:
    request_id: str
    patron_id: str
    template_key: str = ""
    subject: str = ""
    body: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    secret_variables: Mapping[str, str] = field(default_factory=dict)
    language: str = ""
    reference: str = ""

    def fingerprint(self) -> str:
        """What makes two sends "the same request". Secret values are left out on purpose: a hash of
        a password is not something to keep."""
        data = {
            "patron_id": self.patron_id,
            "template_key": self.template_key,
            "subject": self.subject,
            "body": self.body,
            "variables": dict(sorted(self.variables.items())),
            "secret_names": sorted(self.secret_variables),
            "language": self.language,
            "reference": self.reference,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class MessageService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        contacts: ContactDirectory,
        box: SecretBox,
        config: NotifyConfig,
        renderer: Renderer | None = None,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.contacts = contacts
        self.box = box
        self.config = config
        self.renderer = renderer or Renderer()
        self.on_queued = on_queued

    # --- send --------------------------------------------------------------------------------------

    async def send(self, cmd: SendCommand, principal: Principal) -> repo.MessageRecord:
        _validate(cmd)
        existing = await self.db.read(repo.message_by_request_id, cmd.request_id)
        if existing is not None:
            return _same_request(existing, cmd)
        contact = await self.contacts.contact(cmd.patron_id)
        _check_address(contact)
        language = cmd.language or (contact.language if contact.language in LANGUAGES else "")
        language = language or self.config.default_language
        now = self.clock.now()
        if cmd.template_key:
            template = await self.db.read(
                _resolve_template, cmd.template_key, language, self.config.default_language
            )
            language = template.language
            delivered, redacted = prepare_variables(
                event_for(cmd.template_key),
                {**cmd.variables, **({"message": cmd.body} if cmd.body else {})},
                cmd.secret_variables,
                self._common(contact, now),
            )
            pair = render_pair(self.renderer, template, delivered, redacted, bool(cmd.secret_variables))
            content, copy = pair.delivered, pair.redacted
        else:
            content = copy = Rendered(" ".join(cmd.subject.split()), cmd.body, "")
        message_id = new_id()
        record = repo.MessageRecord(
            id=message_id,
            request_id=cmd.request_id,
            fingerprint=cmd.fingerprint(),
            patron_id=cmd.patron_id,
            template_key=cmd.template_key,
            language=language,
            reference=cmd.reference,
            recipient=contact.email,
            recipient_name=contact.greeting_name,
            subject=copy.subject,
            body_text=copy.body_text,
            body_html=copy.body_html,
            message_id_header=message_id_header(cmd.request_id, self.config.message_id_domain),
            auto_generated=bool(cmd.template_key) and cmd.template_key != "free_message",
            created_at=now,
            updated_at=now,
            requested_by=_actor(principal),
            has_secrets=bool(cmd.secret_variables),
            sealed_content=self.box.seal(content, message_id) if cmd.secret_variables else None,
            delivery=DeliveryState(status=MessageStatus.QUEUED, next_attempt_at=now),
        )
        try:
            await self.db.write(repo.insert_message, record)
        except IntegrityError:
            # A concurrent send with the same key won the race: return its message.
            winner = await self.db.read(repo.message_by_request_id, cmd.request_id)
            if winner is None:
                raise
            return _same_request(winner, cmd)
        log.info(
            "message %s queued for patron %s (%s, key %s)",
            record.id,
            record.patron_id,
            record.template_key or "free",
            record.request_id,
        )
        self.on_queued()
        return record

    def _common(self, contact: PatronContact, now: datetime) -> dict[str, str]:
        return {
            "patron_name": contact.greeting_name,
            "patron_card": contact.card_barcode,
            "patron_email": contact.email,
            "library_name": self.config.library_name,
            "today": now.astimezone(self.clock.tz).date().isoformat(),
        }

    # --- history -----------------------------------------------------------------------------------

    async def get(self, message_id: str, principal: Principal) -> tuple[repo.MessageRecord, list]:
        if not message_id.strip():
            raise InvalidInput("is required", field="id")

        def load(session: Session) -> tuple[repo.MessageRecord | None, list]:
            found = repo.get_message(session, message_id)
            return found, (repo.attempts_of(session, message_id) if found else [])

        record, attempts = await self.db.read(load)
        if record is None or (principal.is_patron and record.patron_id != principal.subject):
            raise NotFound(f"no message {message_id}", reason="MESSAGE_NOT_FOUND")
        return record, attempts

    async def list(
        self,
        principal: Principal,
        *,
        patron_id: str,
        reference: str,
        status: MessageStatus | None,
        template_key: str,
        page_size: int,
        page_token: str,
    ) -> tuple[list[repo.MessageRecord], str]:
        if principal.is_patron:
            if patron_id and patron_id != principal.subject:
                raise PermissionDenied("NOT_YOUR_RECORD", "a patron can read only their own messages")
            patron_id = principal.subject
        if page_size < 0:
            raise InvalidInput("must not be negative", field="page_size")
        size = min(page_size or 50, 500)
        after = repo.decode_cursor(page_token) if page_token else None
        rows = await self.db.read(
            lambda s: repo.list_messages(
                s,
                patron_id=patron_id,
                reference=reference,
                status=status,
                template_key=template_key,
                after=after,
                limit=size + 1,
            )
        )
        token = repo.encode_cursor(rows[size - 1].created_at, rows[size - 1].id) if len(rows) > size else ""
        return rows[:size], token

    # --- staff actions (sync: run inside the servicer's idempotent transaction) ------------------

    async def current_contact(self, message_id: str) -> PatronContact:
        """The patron's contact now: a retry goes to the corrected address, not the one that bounced."""
        if not message_id.strip():
            raise InvalidInput("is required", field="id")
        record = await self.db.read(repo.get_message, message_id)
        if record is None:
            raise NotFound(f"no message {message_id}", reason="MESSAGE_NOT_FOUND")
        contact = await self.contacts.contact(record.patron_id)
        _check_address(contact)
        return contact

    def retry(
        self, session: Session, message_id: str, principal: Principal, contact: PatronContact | None = None
    ) -> repo.MessageRecord:
        record = _load_for_update(session, message_id)
        before = record.delivery.status
        now = self.clock.now()
        record.delivery.retry(now, secrets_wiped=record.secrets_wiped)
        repo.save_delivery(session, record, now, wipe_secrets=False)
        reason = Transition.RETRIED.value
        if contact is not None and contact.email != record.recipient:
            reason += f" (address changed from {record.recipient})"
            record.recipient, record.recipient_name = contact.email, contact.greeting_name
            repo.update_recipient(session, record.id, record.recipient, record.recipient_name)
        repo.record_event(session, record.id, now, before, record.delivery.status, reason, _actor(principal))
        return record

    def cancel(
        self, session: Session, message_id: str, reason: str, principal: Principal
    ) -> repo.MessageRecord:
        record = _load_for_update(session, message_id)
        before = record.delivery.status
        now = self.clock.now()
        record.delivery.cancel(now, reason.strip())
        repo.save_delivery(session, record, now, wipe_secrets=True)
        repo.record_event(
            session,
            record.id,
            now,
            before,
            record.delivery.status,
            f"{Transition.CANCELLED.value}: {reason.strip()}".rstrip(": "),
            _actor(principal),
        )
        return record


def _check_address(contact: PatronContact) -> None:
    if not contact.email:
        raise Conflict(
            f"patron {contact.patron_id} has no e-mail address: tell them by phone or at the desk",
            reason="NO_EMAIL_ADDRESS",
            metadata={"patron_id": contact.patron_id},
        )
    if not valid_address(contact.email):
        raise Conflict(
            f"patron {contact.patron_id}'s e-mail address {contact.email!r} is not valid: correct the record",
            reason="INVALID_EMAIL_ADDRESS",
            metadata={"patron_id": contact.patron_id},
        )


def _load_for_update(session: Session, message_id: str) -> repo.MessageRecord:
    if not message_id.strip():
        raise InvalidInput("is required", field="id")
    record = repo.get_message(session, message_id, for_update=True)
    if record is None:
        raise NotFound(f"no message {message_id}", reason="MESSAGE_NOT_FOUND")
    return record


def _resolve_template(session: Session, key: str, language: str, default_language: str) -> Template:
    """The template in the patron's language, else the library's default language, else any."""
    for candidate in (language, default_language):
        found = repo.get_template(session, key, candidate)
        if found is not None:
            return found
    others = repo.templates_for(session, key)
    if others:
        return others[0]
    raise NotFound(f"no template for the event '{key}'", reason="TEMPLATE_NOT_FOUND")


def _same_request(existing: repo.MessageRecord, cmd: SendCommand) -> repo.MessageRecord:
    if existing.fingerprint != cmd.fingerprint():
        raise InvalidInput(
            "was already used for a different message", field="request_id", reason="REQUEST_ID_REUSED"
        )
    return existing


def _actor(principal: Principal) -> str:
    return f"{principal.kind}:{principal.name or principal.subject}"


def _validate(cmd: SendCommand) -> None:
    if not cmd.request_id.strip():
        raise InvalidInput("is required: it is the idempotency key of the message", field="request_id")
    if len(cmd.request_id) > MAX_REQUEST_ID:
        raise InvalidInput(f"must be at most {MAX_REQUEST_ID} characters", field="request_id")
    if not cmd.patron_id.strip():
        raise InvalidInput("is required", field="patron_id")
    if len(cmd.patron_id) > 64:
        raise InvalidInput("is not a patron id", field="patron_id")
    if cmd.template_key:
        validate_event_key(cmd.template_key, "template_key")
    else:
        if not cmd.subject.strip():
            raise InvalidInput("is required for a free composition (no template_key)", field="subject")
        if not cmd.body.strip():
            raise InvalidInput("is required for a free composition (no template_key)", field="body")
        if cmd.secret_variables:
            raise InvalidInput("are only used with a template", field="secret_variables")
    if len(cmd.subject) > 250:
        raise InvalidInput("must be at most 250 characters", field="subject")
    if len(cmd.body) > MAX_BODY:
        raise InvalidInput(f"must be at most {MAX_BODY} characters", field="body")
    if cmd.language:
        validate_language(cmd.language, "language")
    if len(cmd.reference) > MAX_REFERENCE:
        raise InvalidInput(f"must be at most {MAX_REFERENCE} characters", field="reference")
    for name, values in (("variables", cmd.variables), ("secret_variables", cmd.secret_variables)):
        if len(values) > MAX_VARIABLES:
            raise InvalidInput(f"at most {MAX_VARIABLES} entries", field=name)
        for key, value in values.items():
            if len(value) > MAX_VALUE:
                raise InvalidInput(f"must be at most {MAX_VALUE} characters", field=f"{name}[{key}]")
