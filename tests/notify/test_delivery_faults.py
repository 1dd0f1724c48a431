"""Delivery when things go wrong: SMTP down, permanent refusals, a worker killed mid-delivery,
notify itself down while another service needs a notice sent."""

from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import MetaData, select

from bibliodesk.notify.v1 import notify_pb2 as pb
from bibliodesk.notify.v1 import notify_pb2_grpc as pb_grpc
from bibliodesk.runtime.clock import ManualClock
from bibliodesk.runtime.db import Database
from bibliodesk.runtime.outbox import OutboxRelay, add_runtime_tables, enqueue
from services.notify.store import tables
from tests.helpers import error_reason

from .conftest import BOUNCE, MARIA, NotifyEnv

READY = {"title": "Il nome della rosa", "pickup_branch": "Sede centrale"}


async def test_smtp_down_for_a_while_then_delivered_once(notify_env: NotifyEnv) -> None:
    notify_env.smtp.stop()
    message = await notify_env.send(
        request_id="ready:1", patron_id=MARIA, template_key="reservation_ready", variables=READY
    )
    retrying = await notify_env.until(message.id, pb.MESSAGE_STATUS_RETRYING)
    assert retrying.attempts == 1 and "unreachable" in retrying.last_error
    assert retrying.next_attempt_at.ToDatetime() > notify_env.clock.now().replace(tzinfo=None)

    # Not due yet: nothing happens however often the worker looks.
    await notify_env.worker.drain()
    assert (await notify_env.get(message.id)).attempts == 1

    notify_env.clock.advance(minutes=2)  # past the first backoff (60 s +/- 20 %)
    second = await notify_env.until_attempts(message.id, 2)
    assert second.status == pb.MESSAGE_STATUS_RETRYING and second.attempts == 2

    notify_env.smtp.start()
    notify_env.clock.advance(minutes=3)  # past the second backoff (120 s +/- 20 %)
    sent = await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)
    assert sent.attempts == 3 and sent.last_error == ""
    notify_env.clock.advance(hours=1)
    await notify_env.worker.drain()
    assert len(notify_env.smtp.received) == 1
    assert "è già disponibile" in notify_env.smtp.received[0]["Subject"]


async def test_retry_budget_spent_fails_and_staff_can_retry_it(notify_env: NotifyEnv) -> None:
    notify_env.smtp.stop()
    message = await notify_env.send(
        request_id="b:1", patron_id=MARIA, template_key="free_message", body="Ciao"
    )
    for attempt in range(1, 5):  # BIBLIODESK_NOTIFY_MAX_ATTEMPTS=4
        await notify_env.until_attempts(message.id, attempt)
        notify_env.clock.advance(minutes=15)
    failed = await notify_env.until(message.id, pb.MESSAGE_STATUS_FAILED)
    assert failed.status == pb.MESSAGE_STATUS_FAILED and failed.attempts == 4
    assert failed.HasField("finished_at") and "unreachable" in failed.last_error
    assert notify_env.stack.host is not None
    assert 'bibliodesk_notify_messages{status="failed"} 1' in notify_env.stack.host.metrics.render()

    notify_env.smtp.start()
    stub = notify_env.stub(notify_env.staff())
    retried = await stub.RetryMessage(pb.RetryMessageRequest(request_id="retry-1", id=message.id))
    assert retried.message.status == pb.MESSAGE_STATUS_QUEUED
    sent = await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)
    assert sent.message_id_header == message.message_id_header
    assert len(notify_env.smtp.received) == 1
    attempts = (await stub.GetMessage(pb.GetMessageRequest(id=message.id))).attempts
    assert [(a.number, a.outcome, a.status_after, a.reason) for a in attempts] == [
        (1, "TEMPORARY_FAILURE", pb.MESSAGE_STATUS_RETRYING, "temporary failure, will retry"),
        (2, "TEMPORARY_FAILURE", pb.MESSAGE_STATUS_RETRYING, "temporary failure, will retry"),
        (3, "TEMPORARY_FAILURE", pb.MESSAGE_STATUS_RETRYING, "temporary failure, will retry"),
        (4, "TEMPORARY_FAILURE", pb.MESSAGE_STATUS_FAILED, "retry budget spent"),
        (5, "DELIVERED", pb.MESSAGE_STATUS_SENT, "delivered"),
    ]
    assert "unreachable" in attempts[0].detail
    # Retrying the retry (same request_id) changes nothing; a SENT message cannot be retried.
    again = await stub.RetryMessage(pb.RetryMessageRequest(request_id="retry-1", id=message.id))
    assert again.message.status == pb.MESSAGE_STATUS_QUEUED  # the first answer, replayed
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RetryMessage(pb.RetryMessageRequest(request_id="retry-2", id=message.id))
    assert error_reason(err.value) == "MESSAGE_NOT_FAILED"
    await notify_env.worker.drain()
    assert len(notify_env.smtp.received) == 1


async def test_permanent_refusal_fails_at_once_with_the_server_reply(notify_env: NotifyEnv) -> None:
    notify_env.smtp.refuse["nobody@example.org"] = "550 5.1.1 No such user here"
    message = await notify_env.send(
        request_id="bounce", patron_id=BOUNCE, template_key="free_message", body="x"
    )
    failed = await notify_env.until(message.id, pb.MESSAGE_STATUS_FAILED)
    assert failed.attempts == 1
    assert "550" in failed.last_error and "No such user" in failed.last_error
    assert notify_env.smtp.received == []


async def test_after_a_bounce_the_corrected_address_gets_the_retry(notify_env: NotifyEnv) -> None:
    from dataclasses import replace

    from .conftest import CONTACTS

    notify_env.smtp.refuse["nobody@example.org"] = "550 5.1.1 No such user here"
    message = await notify_env.send(
        request_id="fix:1", patron_id=BOUNCE, template_key="free_message", body="x"
    )
    await notify_env.until(message.id, pb.MESSAGE_STATUS_FAILED)
    original = CONTACTS[BOUNCE]
    CONTACTS[BOUNCE] = replace(original, email="anna.verdi@example.org")  # the desk corrects the record
    try:
        retried = await notify_env.stub().RetryMessage(
            pb.RetryMessageRequest(request_id="fix-r", id=message.id)
        )
    finally:
        CONTACTS[BOUNCE] = original
    assert retried.message.recipient == "anna.verdi@example.org"
    await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)
    assert notify_env.smtp.envelopes[0][1] == ["anna.verdi@example.org"]
    assert notify_env.smtp.received[0]["Message-ID"].strip() == message.message_id_header


async def test_cancelled_message_is_never_delivered(notify_env: NotifyEnv) -> None:
    notify_env.smtp.stop()
    message = await notify_env.send(request_id="c:1", patron_id=MARIA, template_key="free_message", body="x")
    await notify_env.until(message.id, pb.MESSAGE_STATUS_RETRYING)
    stub = notify_env.stub(notify_env.staff())
    cancelled = await stub.CancelMessage(
        pb.CancelMessageRequest(request_id="cancel-1", id=message.id, reason="sent by phone instead")
    )
    assert cancelled.message.status == pb.MESSAGE_STATUS_CANCELLED
    assert "sent by phone instead" in cancelled.message.last_error
    notify_env.smtp.start()
    notify_env.clock.advance(hours=2)
    await notify_env.worker.drain()
    assert (await notify_env.get(message.id)).status == pb.MESSAGE_STATUS_CANCELLED
    assert notify_env.smtp.received == []


class _KilledAfterAccept:
    """Hands the mail to the real SMTP server, then dies before the worker can record it."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.description = "killed after accept"

    async def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> str:
        await self.real.send(message, envelope_from, recipient)
        raise asyncio.CancelledError("worker killed")


async def test_worker_killed_after_smtp_accepted_resends_the_same_message_id(notify_env: NotifyEnv) -> None:
    worker = notify_env.worker
    worker.transport = _KilledAfterAccept(worker.transport)
    message = await notify_env.send(
        request_id="reservation-ready:r9", patron_id=MARIA, template_key="reservation_ready", variables=READY
    )
    for _ in range(200):
        if notify_env.smtp.received:
            break
        await asyncio.sleep(0.02)
    assert len(notify_env.smtp.received) == 1
    # The crash left the message leased and unrecorded.
    assert (await notify_env.get(message.id)).status == pb.MESSAGE_STATUS_QUEUED

    await notify_env.restart()  # a fresh process with a fresh worker
    notify_env.clock.advance(minutes=3)  # past the dead worker's lease
    sent = await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)
    assert sent.attempts == 1
    ids = [m["Message-ID"].strip() for m in notify_env.smtp.received]
    assert len(ids) == 2 and len(set(ids)) == 1 and ids[0] == sent.message_id_header
    assert notify_env.smtp.received[0].as_bytes() == notify_env.smtp.received[1].as_bytes()


async def test_delivered_ready_notice_tells_reservations_once(notify_env: NotifyEnv) -> None:
    message = await notify_env.send(
        request_id="reservation-ready:r5",
        patron_id=MARIA,
        template_key="reservation_ready",
        variables=READY,
        reference="reservation:r5",
    )
    reminder = await notify_env.send(
        request_id="reminder:r5",
        patron_id=MARIA,
        template_key="pickup_reminder",
        variables={**READY, "pickup_deadline": "2026-12-10"},
        reference="reservation:r5",
    )
    sent = await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)
    await notify_env.until(reminder.id, pb.MESSAGE_STATUS_SENT)
    relay = notify_env.stack.runtime("notify").relay
    for _ in range(500):  # the relay also runs in the background: wait for it, no timing asserted
        await relay.drain()
        if notify_env.reservations.calls:
            break
        await asyncio.sleep(0.02)
    await relay.drain()
    calls = notify_env.reservations.calls
    assert list(calls) == [f"notify-delivered:{message.id}"]
    reservation_id, notified_at = calls[f"notify-delivered:{message.id}"]
    assert reservation_id == "r5"
    assert notified_at == sent.sent_at.ToDatetime().replace(tzinfo=notified_at.tzinfo)

    # A week later housekeeping forgets the delivered outbox row.
    rt = notify_env.stack.runtime("notify")
    assert rt.db.read_sync(lambda s: s.execute(select(tables.outbox)).all())
    notify_env.clock.advance(days=8)
    await rt.state["housekeep"]()
    assert rt.db.read_sync(lambda s: s.execute(select(tables.outbox)).all()) == []


async def test_notice_queued_while_notify_is_down_arrives_after_restart(
    notify_env: NotifyEnv, tmp_path: Path
) -> None:
    """The caller (e.g. reservations) keeps the notice in its own outbox; its relay retries until
    notify is back, and a replayed row never mails twice."""
    caller_clock = ManualClock()
    caller_meta = MetaData()
    caller_outbox, _ = add_runtime_tables(caller_meta)
    caller_db = Database(f"sqlite:///{tmp_path}/caller.db", name="caller")
    caller_meta.create_all(caller_db.write_engine)
    relay = OutboxRelay(caller_db, caller_outbox, caller_clock)
    token = notify_env.service("reservations")

    address = {"notify": notify_env.stack.address("notify")}

    async def send_notice(payload: dict[str, Any], key: str) -> None:
        channel = grpc.aio.insecure_channel(address["notify"])
        try:
            stub = pb_grpc.NotifyServiceStub(channel)
            await stub.SendMessage(
                pb.SendMessageRequest(request_id=key, **payload),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=5,
            )
        finally:
            await channel.close()

    relay.register("notify.send", send_notice)
    await notify_env.stack.stop()
    try:
        # The reservation becomes ready while notify is down: the notice waits in the outbox.
        notice = {
            "patron_id": MARIA,
            "template_key": "reservation_ready",
            "variables": READY,
            "reference": "reservation:r7",
        }
        caller_db.write_sync(
            lambda s: enqueue(
                s, caller_outbox, "notify.send", "reservation-ready:r7", notice, now=caller_clock.now()
            )
        )
        await relay.drain()
        row = caller_db.read_sync(lambda s: s.execute(select(caller_outbox)).one())
        assert row.delivered_at is None and row.attempts == 1 and "UNAVAILABLE" in row.last_error

        await notify_env.stack.start()
        notify_env.point_peers()
        address["notify"] = notify_env.stack.address("notify")
        caller_clock.advance(seconds=5)
        await relay.drain()
        row = caller_db.read_sync(lambda s: s.execute(select(caller_outbox)).one())
        assert row.delivered_at is not None

        history = await notify_env.stub().ListMessages(pb.ListMessagesRequest(reference="reservation:r7"))
        [message] = history.messages
        await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)

        # The relay replays the row (e.g. it crashed before marking it delivered): still one mail.
        await send_notice(json.loads(row.payload), "reservation-ready:r7")
        await notify_env.worker.drain()
        history = await notify_env.stub().ListMessages(pb.ListMessagesRequest(reference="reservation:r7"))
        assert [m.id for m in history.messages] == [message.id]
        assert len(notify_env.smtp.received) == 1
        assert "è già disponibile" in notify_env.smtp.received[0]["Subject"]
    finally:
        caller_db.dispose()


async def test_without_smtp_each_mail_is_written_as_an_eml_file(stack_factory: Any, tmp_path: Path) -> None:
    from .conftest import NOTIFY_ENV, FakePatrons, FakeReservations, SmtpSink

    stack = await stack_factory("notify", clock=ManualClock(), env=NOTIFY_ENV)
    env = NotifyEnv(stack, SmtpSink(), FakePatrons(stack), FakeReservations())
    await env.serve_peers()
    try:
        message = await env.send(
            request_id="eml-1", patron_id=MARIA, template_key="reservation_ready", variables=READY
        )
        sent = await env.until(message.id, pb.MESSAGE_STATUS_SENT)
        folder = stack.home / "outbox-mail"
        [path] = list(folder.glob("*.eml"))
        from email import message_from_bytes
        from email.policy import default

        mail = message_from_bytes(path.read_bytes(), policy=default)
        assert mail["Message-ID"].strip() == sent.message_id_header
        assert mail["To"] == "Maria Rossi <maria.rossi@example.org>"
        assert "è già disponibile" in mail.get_body(("plain",)).get_content()
    finally:
        await env.close()


async def test_messages_table_never_holds_a_lease_after_delivery(notify_env: NotifyEnv) -> None:
    message = await notify_env.send(request_id="l:1", patron_id=MARIA, template_key="free_message", body="x")
    await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)
    db = notify_env.stack.runtime("notify").db
    row = db.read_sync(
        lambda s: s.execute(select(tables.messages).where(tables.messages.c.id == message.id)).one()
    )
    assert row.locked_until is None and row.next_attempt_at is None
    attempts = db.read_sync(
        lambda s: s.execute(
            select(tables.delivery_attempts).where(tables.delivery_attempts.c.message_id == message.id)
        ).all()
    )
    assert [(a.number, a.outcome, a.status_after, a.reason) for a in attempts] == [
        (1, "DELIVERED", "SENT", "delivered")
    ]
    assert attempts[0].finished_at >= attempts[0].started_at


class _Broken:
    description = "broken"

    async def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> str:
        raise RuntimeError("transport bug")


async def test_an_unexpected_error_counts_as_an_attempt_and_does_not_wedge_the_message(
    notify_env: NotifyEnv,
) -> None:
    worker = notify_env.worker
    real, worker.transport = worker.transport, _Broken()
    message = await notify_env.send(
        request_id="bug:1", patron_id=MARIA, template_key="free_message", body="x"
    )
    retrying = await notify_env.until(message.id, pb.MESSAGE_STATUS_RETRYING)
    assert "internal error: RuntimeError: transport bug" in retrying.last_error
    worker.transport = real
    notify_env.clock.advance(minutes=2)
    sent = await notify_env.until(message.id, pb.MESSAGE_STATUS_SENT)
    assert sent.attempts == 2 and len(notify_env.smtp.received) == 1
