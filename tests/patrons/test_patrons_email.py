"""P5 by e-mail: the credentials go through patrons' outbox to notify (template "credentials"), the
password is in the e-mail and nowhere in either service's stored data."""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from email.policy import default as default_policy

import grpc
import pytest
from sqlalchemy import select

from bibliodesk.notify.v1 import notify_pb2, notify_pb2_grpc
from bibliodesk.patrons.v1 import patrons_pb2 as pb
from services.patrons.store import tables
from tests.helpers import error_reason
from tests.patrons.support import (
    admin,
    adult_category,
    complete_and_enroll,
    form,
    operator,
    pre_register,
    rid,
    start,
)

MAIL_ENV = {"BIBLIODESK_NOTIFY_POLL_SECONDS": "0.05", "BIBLIODESK_LIBRARY_NAME": "Biblioteca civica"}


async def test_p5_credentials_are_e_mailed_once_through_notify(stack_factory) -> None:
    stack = await start(stack_factory, "notify", env=MAIL_ENV)
    desk = await operator(stack)
    await adult_category(await admin(stack))
    patron_id = await pre_register(stack)
    await complete_and_enroll(desk, patron_id)
    request = pb.IssueTemporaryCredentialsRequest(request_id=rid(), patron_id=patron_id, send_by_email=True)
    issued = await desk.patrons.IssueTemporaryCredentials(request)
    assert issued.email_queued
    await desk.patrons.IssueTemporaryCredentials(request)  # a retry queues nothing more
    password = issued.credentials.temporary_password
    await stack.runtime("patrons").relay.drain()

    staff = notify_pb2_grpc.NotifyServiceStub(stack.channel("notify", stack.token(kind="staff")))
    for _ in range(300):  # wait for the delivery worker (no timing asserted)
        listed = await staff.ListMessages(notify_pb2.ListMessagesRequest(patron_id=patron_id))
        if listed.messages and listed.messages[0].status == notify_pb2.MESSAGE_STATUS_SENT:
            break
        stack.runtime("notify").state["worker"].wake()
        await asyncio.sleep(0.02)
    [message] = listed.messages
    assert message.template_key == "credentials" and message.reference == f"patron:{patron_id}"
    assert message.status == notify_pb2.MESSAGE_STATUS_SENT
    [path] = list((stack.home / "outbox-mail").glob("*.eml"))
    mail = message_from_bytes(path.read_bytes(), policy=default_policy)
    assert "nicolo.dangelo@example.org" in mail["To"]
    text = mail.get_body(("plain",)).get_content()
    assert password in text and issued.credentials.username in text
    # Notify's history keeps a redacted copy; patrons never wrote the password anywhere.
    stored = await staff.GetMessage(notify_pb2.GetMessageRequest(id=message.id))
    assert password.encode() not in stored.SerializeToString()
    rows = stack.runtime("patrons").db.read_sync(lambda s: s.execute(select(tables.outbox.c.payload)).all())
    assert rows and all(password not in r.payload for r in rows)


async def test_p5_e_mail_refused_without_an_address_and_nothing_is_issued(stack_factory) -> None:
    stack = await start(stack_factory)
    desk = await operator(stack)
    await adult_category(await admin(stack))
    created = (
        await desk.patrons.CreatePatron(
            pb.CreatePatronRequest(request_id=rid(), privacy_consent=True, details=form(email=""))
        )
    ).patron
    await complete_and_enroll(desk, created.id)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await desk.patrons.IssueTemporaryCredentials(
            pb.IssueTemporaryCredentialsRequest(request_id=rid(), patron_id=created.id, send_by_email=True)
        )
    assert (
        err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        and error_reason(err.value) == "NO_EMAIL_ADDRESS"
    )
    after = (await desk.patrons.GetPatron(pb.GetPatronRequest(patron_id=created.id))).patron
    assert after.credentials.state == pb.CREDENTIALS_STATE_NONE
