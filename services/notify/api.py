"""The gRPC servicer: proto in, use case, proto out. Nothing else lives here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.exc import IntegrityError

from bibliodesk.notify.v1 import notify_pb2 as pb
from bibliodesk.notify.v1 import notify_pb2_grpc as pb_grpc
from bibliodesk.runtime.auth import (
    SERVICE,
    STAFF,
    current_principal,
    require_admin,
    require_kind,
    require_staff,
)
from bibliodesk.runtime.clock import Clock
from bibliodesk.runtime.db import Database
from bibliodesk.runtime.errors import DomainError
from bibliodesk.runtime.idempotency import idempotent
from services.notify.app.messages import MessageService, SendCommand
from services.notify.app.templates import TemplateService
from services.notify.domain.errors import InvalidInput
from services.notify.domain.events import BUILT_IN_KEYS, EVENTS, Event, event_for
from services.notify.domain.messages import MessageStatus
from services.notify.domain.templates import Template
from services.notify.store import repository as repo
from services.notify.store import tables

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["NotifyService"].full_name

_STATUS_TO_PB = {
    MessageStatus.QUEUED: pb.MESSAGE_STATUS_QUEUED,
    MessageStatus.SENT: pb.MESSAGE_STATUS_SENT,
    MessageStatus.RETRYING: pb.MESSAGE_STATUS_RETRYING,
    MessageStatus.FAILED: pb.MESSAGE_STATUS_FAILED,
    MessageStatus.CANCELLED: pb.MESSAGE_STATUS_CANCELLED,
}
_STATUS_FROM_PB = {v: k for k, v in _STATUS_TO_PB.items()}


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    out = Timestamp()
    out.FromDatetime(value)
    return out


def message_pb(m: repo.MessageRecord) -> pb.Message:
    d = m.delivery
    return pb.Message(
        id=m.id,
        patron_id=m.patron_id,
        template_key=m.template_key,
        subject=m.subject,
        status=_STATUS_TO_PB[d.status],
        created_at=_ts(m.created_at),
        sent_at=_ts(d.sent_at),
        attempts=d.attempts,
        last_error=d.last_error,
        reference=m.reference,
        message_id_header=m.message_id_header,
        recipient=m.recipient,
        language=m.language,
        body_text=m.body_text,
        body_html=m.body_html,
        next_attempt_at=_ts(d.next_attempt_at),
        finished_at=_ts(d.finished_at),
        request_id=m.request_id,
        requested_by=m.requested_by,
    )


def attempt_pb(row: Any) -> pb.DeliveryAttempt:
    return pb.DeliveryAttempt(
        number=row.number,
        started_at=_ts(row.started_at),
        finished_at=_ts(row.finished_at),
        outcome=row.outcome,
        detail=row.detail,
        status_after=_STATUS_TO_PB[MessageStatus(row.status_after)],
        reason=row.reason,
    )


def template_pb(t: Template) -> pb.Template:
    return pb.Template(
        event_key=t.event_key,
        language=t.language,
        subject=t.subject,
        body_text=t.body_text,
        body_html=t.body_html,
        description=t.description,
        built_in=t.built_in,
        etag=t.etag,
        create_time=_ts(t.created_at),
        update_time=_ts(t.updated_at),
    )


def template_from_pb(t: pb.Template) -> Template:
    return Template(
        event_key=t.event_key.strip(),
        language=t.language.strip().lower(),
        subject=t.subject,
        body_text=t.body_text,
        body_html=t.body_html,
        description=t.description,
    )


def event_pb(e: Event) -> pb.Event:
    return pb.Event(
        key=e.key,
        description=e.description,
        built_in=e.built_in,
        variables=[
            pb.TemplateVariable(
                name=v.name,
                description=v.description,
                example=v.example,
                always_present=v.always_present,
                secret=v.secret,
            )
            for v in e.all_variables()
        ],
    )


class NotifyServicer(pb_grpc.NotifyServiceServicer):
    def __init__(
        self, db: Database, clock: Clock, messages: MessageService, templates: TemplateService
    ) -> None:
        self.db = db
        self.clock = clock
        self.messages = messages
        self.templates = templates

    async def _write(self, work: Any) -> Any:
        """One idempotent transaction. Two concurrent first calls with the same request_id race: the
        loser fails on the idempotency key, or on the state its twin just changed (READ COMMITTED:
        the template its twin created, the etag its twin moved). Run once more: it then finds the
        stored answer, or fails again for a real reason."""
        try:
            return await self.db.write(work)
        except (IntegrityError, DomainError):
            return await self.db.write(work)

    def _idempotent(self, session: Any, method: str, request: Any, produce: Any, response_type: Any) -> Any:
        return idempotent(
            session, tables.idempotency_keys, method, request, produce, response_type, now=self.clock.now()
        )

    # --- messages --------------------------------------------------------------------------------

    async def SendMessage(self, request: pb.SendMessageRequest, context: grpc.aio.ServicerContext) -> Any:
        principal = require_kind(STAFF, SERVICE)
        cmd = SendCommand(
            request_id=request.request_id.strip(),
            patron_id=request.patron_id.strip(),
            template_key=request.template_key.strip(),
            subject=request.subject,
            body=request.body,
            variables=dict(request.variables),
            secret_variables=dict(request.secret_variables),
            language=request.language.strip().lower(),
            reference=request.reference.strip(),
        )
        record = await self.messages.send(cmd, principal)
        return pb.SendMessageResponse(message=message_pb(record))

    async def GetMessage(self, request: pb.GetMessageRequest, context: grpc.aio.ServicerContext) -> Any:
        principal = current_principal()
        record, attempts = await self.messages.get(request.id.strip(), principal)
        return pb.GetMessageResponse(
            message=message_pb(record),
            attempts=[] if principal.is_patron else [attempt_pb(a) for a in attempts],
        )

    async def ListMessages(self, request: pb.ListMessagesRequest, context: grpc.aio.ServicerContext) -> Any:
        status = _STATUS_FROM_PB.get(request.status) if request.status else None
        if request.status and status is None:
            raise InvalidInput("is not a known status", field="status")
        records, token = await self.messages.list(
            current_principal(),
            patron_id=request.patron_id.strip(),
            reference=request.reference.strip(),
            status=status,
            template_key=request.template_key.strip(),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListMessagesResponse(messages=[message_pb(r) for r in records], next_page_token=token)

    async def RetryMessage(self, request: pb.RetryMessageRequest, context: grpc.aio.ServicerContext) -> Any:
        principal = require_staff()
        replay = bool(request.request_id) and await self.db.read(
            repo.stored_answer_exists, "RetryMessage", request.request_id
        )
        contact = None if replay else await self.messages.current_contact(request.id.strip())

        def work(session: Any) -> pb.RetryMessageResponse:
            return self._idempotent(
                session,
                "RetryMessage",
                request,
                lambda: pb.RetryMessageResponse(
                    message=message_pb(self.messages.retry(session, request.id.strip(), principal, contact))
                ),
                pb.RetryMessageResponse,
            )

        response = await self._write(work)
        self.messages.on_queued()
        return response

    async def CancelMessage(self, request: pb.CancelMessageRequest, context: grpc.aio.ServicerContext) -> Any:
        principal = require_staff()

        def work(session: Any) -> pb.CancelMessageResponse:
            return self._idempotent(
                session,
                "CancelMessage",
                request,
                lambda: pb.CancelMessageResponse(
                    message=message_pb(
                        self.messages.cancel(session, request.id.strip(), request.reason, principal)
                    )
                ),
                pb.CancelMessageResponse,
            )

        return await self._write(work)

    # --- templates -------------------------------------------------------------------------------

    async def ListEvents(self, request: pb.ListEventsRequest, context: grpc.aio.ServicerContext) -> Any:
        require_staff()
        custom = [event_for(key) for key in await self.db.read(repo.event_keys) if key not in BUILT_IN_KEYS]
        return pb.ListEventsResponse(events=[event_pb(e) for e in [*EVENTS, *custom]])

    async def CreateTemplate(
        self, request: pb.CreateTemplateRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        principal = require_admin()

        def work(session: Any) -> pb.CreateTemplateResponse:
            return self._idempotent(
                session,
                "CreateTemplate",
                request,
                lambda: pb.CreateTemplateResponse(
                    template=template_pb(
                        self.templates.create(session, template_from_pb(request.template), principal)
                    )
                ),
                pb.CreateTemplateResponse,
            )

        return await self._write(work)

    async def GetTemplate(self, request: pb.GetTemplateRequest, context: grpc.aio.ServicerContext) -> Any:
        require_staff()
        found = await self.db.read(
            self.templates.get, request.event_key.strip(), request.language.strip().lower()
        )
        return pb.GetTemplateResponse(template=template_pb(found))

    async def ListTemplates(self, request: pb.ListTemplatesRequest, context: grpc.aio.ServicerContext) -> Any:
        require_staff()
        if request.page_size < 0:
            raise InvalidInput("must not be negative", field="page_size")
        size = min(request.page_size or 100, 500)
        after: tuple[str, str] | None = None
        if request.page_token:
            key, _, language = request.page_token.partition("/")
            if not key or not language:
                raise InvalidInput("is not a token returned by a previous page", field="page_token")
            after = (key, language)
        rows = await self.db.read(
            repo.list_templates, request.event_key.strip(), request.language.strip().lower(), after, size + 1
        )
        token = f"{rows[size - 1].event_key}/{rows[size - 1].language}" if len(rows) > size else ""
        return pb.ListTemplatesResponse(
            templates=[template_pb(t) for t in rows[:size]], next_page_token=token
        )

    async def UpdateTemplate(
        self, request: pb.UpdateTemplateRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        principal = require_admin()

        def work(session: Any) -> pb.UpdateTemplateResponse:
            return self._idempotent(
                session,
                "UpdateTemplate",
                request,
                lambda: pb.UpdateTemplateResponse(
                    template=template_pb(
                        self.templates.update(
                            session,
                            template_from_pb(request.template),
                            list(request.update_mask.paths),
                            request.etag,
                            principal,
                        )
                    )
                ),
                pb.UpdateTemplateResponse,
            )

        return await self._write(work)

    async def DeleteTemplate(
        self, request: pb.DeleteTemplateRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        require_admin()

        def work(session: Any) -> pb.DeleteTemplateResponse:
            def produce() -> pb.DeleteTemplateResponse:
                self.templates.delete(
                    session, request.event_key.strip(), request.language.strip().lower(), request.etag
                )
                return pb.DeleteTemplateResponse()

            return self._idempotent(session, "DeleteTemplate", request, produce, pb.DeleteTemplateResponse)

        return await self._write(work)

    async def RestoreDefaultTemplate(
        self, request: pb.RestoreDefaultTemplateRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        principal = require_admin()

        def work(session: Any) -> pb.RestoreDefaultTemplateResponse:
            return self._idempotent(
                session,
                "RestoreDefaultTemplate",
                request,
                lambda: pb.RestoreDefaultTemplateResponse(
                    template=template_pb(
                        self.templates.restore_default(
                            session, request.event_key.strip(), request.language.strip().lower(), principal
                        )
                    )
                ),
                pb.RestoreDefaultTemplateResponse,
            )

        return await self._write(work)

    async def PreviewTemplate(
        self, request: pb.PreviewTemplateRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        require_staff()
        draft = template_from_pb(request.draft) if request.HasField("draft") else None
        rendered = await self.db.read(
            self.templates.preview,
            request.event_key.strip(),
            request.language.strip().lower(),
            draft,
            dict(request.variables),
        )
        return pb.PreviewTemplateResponse(
            subject=rendered.subject, body_text=rendered.body_text, body_html=rendered.body_html
        )
