"""N2 history (staff and the patron's own view) and P5 credentials: the password reaches the patron and
nowhere else."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from bibliodesk.notify.v1 import notify_pb2 as pb
from services.notify.store import tables

from .conftest import JOHN, MARIA, NotifyEnv

PASSWORD = "Zq7-vR2-kP9x"


def _all_stored_text(env: NotifyEnv) -> str:
    """Every value in every notify table, as text."""
    db = env.stack.runtime("notify").db

    def dump(session: Any) -> str:
        chunks = []
        for table in tables.metadata.sorted_tables:
            for row in session.execute(select(table)):
                for value in row:
                    if isinstance(value, bytes):
                        chunks.append(value.decode("latin-1"))
                    elif value is not None:
                        chunks.append(str(value))
        return "\n".join(chunks)

    return db.read_sync(dump)


async def test_credentials_reach_the_patron_but_the_password_is_never_kept(
    notify_env: NotifyEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    message = await notify_env.send(
        notify_env.service("patrons"),
        request_id=f"credentials:{MARIA}:1",
        patron_id=MARIA,
        template_key="credentials",
        variables={"username": "mrossi", "expires_on": "2026-12-17"},
        secret_variables={"password": PASSWORD},
        reference=f"patron:{MARIA}",
    )
    assert PASSWORD not in message.body_text and "********" in message.body_text
    # Before delivery the content waits sealed (encrypted), never in the clear.
    assert PASSWORD not in _all_stored_text(notify_env)

    sent = await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)
    [mail] = notify_env.smtp.received
    body = mail.get_body(("plain",)).get_content()
    assert f"Password provvisoria: {PASSWORD}" in body and "Nome utente: mrossi" in body
    assert "vale fino al 2026-12-17" in body

    assert PASSWORD not in sent.body_text and "Password provvisoria: ********" in sent.body_text
    assert PASSWORD not in _all_stored_text(notify_env)
    db = notify_env.stack.runtime("notify").db
    sealed = db.read_sync(
        lambda s: s.execute(
            select(tables.messages.c.sealed_content).where(tables.messages.c.id == message.id)
        ).scalar_one()
    )
    assert sealed is None  # wiped once delivered
    ours = [
        r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")
    ]  # not the SMTP server's
    assert ours and not any(PASSWORD in line for line in ours)


async def test_a_failed_credentials_message_cannot_be_retried_because_its_secret_is_gone(
    notify_env: NotifyEnv,
) -> None:
    notify_env.smtp.refuse["maria.rossi@example.org"] = "550 mailbox unavailable"
    message = await notify_env.send(
        request_id="cred-fail",
        patron_id=MARIA,
        template_key="credentials",
        variables={"username": "mrossi"},
        secret_variables={"password": PASSWORD},
    )
    await notify_env.until(message.id, pb.MESSAGE_STATUS_FAILED)
    assert PASSWORD not in _all_stored_text(notify_env)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await notify_env.stub().RetryMessage(pb.RetryMessageRequest(request_id="r", id=message.id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    from tests.helpers import error_reason

    assert error_reason(err.value) == "SECRETS_WIPED"


async def test_history_for_staff_and_for_the_patron_own_only(notify_env: NotifyEnv) -> None:
    ids = []
    for n in range(3):
        m = await notify_env.send(
            request_id=f"h:{n}", patron_id=MARIA, template_key="free_message", body=f"n{n}"
        )
        ids.append(m.id)
        notify_env.clock.advance(minutes=1)
    other = await notify_env.send(request_id="h:john", patron_id=JOHN, template_key="free_message", body="x")

    staff = notify_env.stub(notify_env.staff())
    first = await staff.ListMessages(pb.ListMessagesRequest(patron_id=MARIA, page_size=2))
    assert [m.id for m in first.messages] == [ids[2], ids[1]]  # newest first
    assert first.next_page_token
    second = await staff.ListMessages(
        pb.ListMessagesRequest(patron_id=MARIA, page_size=2, page_token=first.next_page_token)
    )
    assert [m.id for m in second.messages] == [ids[0]] and second.next_page_token == ""

    mine = notify_env.stub(notify_env.patron(MARIA))
    own = await mine.ListMessages(pb.ListMessagesRequest())
    assert {m.id for m in own.messages} == set(ids)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mine.ListMessages(pb.ListMessagesRequest(patron_id=JOHN))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mine.GetMessage(pb.GetMessageRequest(id=other.id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    await notify_env.until(ids[0], pb.MESSAGE_STATUS_SENT)
    got = await mine.GetMessage(pb.GetMessageRequest(id=ids[0]))
    assert got.message.body_text.startswith("Gentile Maria Rossi")
    assert list(got.attempts) == []  # the delivery log is for staff
    assert len((await staff.GetMessage(pb.GetMessageRequest(id=ids[0]))).attempts) == 1

    await notify_env.until(ids[0], pb.MESSAGE_STATUS_SENT)
    sent_only = await staff.ListMessages(
        pb.ListMessagesRequest(status=pb.MESSAGE_STATUS_SENT, patron_id=MARIA)
    )
    assert ids[0] in {m.id for m in sent_only.messages}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await staff.ListMessages(pb.ListMessagesRequest(page_token="garbage!"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
