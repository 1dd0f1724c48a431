"""R6 cut and R7 the one-shot notice, with the real notify service delivering the e-mails, and the
live inbox (WatchInbox) a desk screen keeps open."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import field_mask_pb2

from bibliodesk.notify.v1 import notify_pb2 as npb
from bibliodesk.notify.v1 import notify_pb2_grpc as npb_grpc
from bibliodesk.patrons.v1 import patrons_pb2 as ppb
from bibliodesk.requests.v1 import requests_pb2 as pb
from tests.helpers import error_fields, error_reason

from .conftest import World, make_world, rid


@pytest.fixture
async def world(stack_factory: object) -> World:
    return await make_world(stack_factory, notify=True)


async def messages_about(world: World, request_id: str) -> list[npb.Message]:
    """Waits until the requests outbox has handed everything to notify (the background relay may
    be mid-delivery), then asks notify for the messages about this request."""
    rt = world.stack.runtime("requests")
    for _ in range(600):
        await rt.relay.drain()
        if await rt.db.read(rt.relay.pending_count) == 0:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the requests outbox did not empty")
    staff = world.stack.token(kind="staff", roles=("operator",))
    notify = npb_grpc.NotifyServiceStub(world.stack.channel("notify", staff))
    reply = await notify.ListMessages(npb.ListMessagesRequest(reference=f"inbox-request:{request_id}"))
    return list(reply.messages)


async def test_the_notice_is_sent_once_and_the_row_says_so(world: World) -> None:
    patron = await world.enrolled_patron(email="anna@example.org")
    request = await world.submit(patron, "B001")

    sent = await world.inbox.SendRequestNotice(
        pb.SendRequestNoticeRequest(
            request_id="notice-1",
            reservation_request_id=request.id,
            body="Il libro è in restauro fino a lunedì.",
        )
    )
    row = sent.reservation_request
    assert row.notice_sent_at.seconds and not row.can_send_notice
    assert row.notice_reference == f"inbox-request:{request.id}"
    [message] = await messages_about(world, request.id)
    assert message.patron_id == patron and message.template_key == "request_notice"
    assert "Il nome della rosa" in message.subject + message.body_text
    assert "restauro" in message.body_text

    # A retry of the same call is the same answer; a second notice is refused and nothing more is sent.
    again = await world.inbox.SendRequestNotice(
        pb.SendRequestNoticeRequest(
            request_id="notice-1",
            reservation_request_id=request.id,
            body="Il libro è in restauro fino a lunedì.",
        )
    )
    assert again.reservation_request.notice_sent_at == row.notice_sent_at
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.inbox2.SendRequestNotice(
            pb.SendRequestNoticeRequest(
                request_id=rid(), reservation_request_id=request.id, subject="Ancora", body="Un altro avviso"
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(err.value) == "NOTICE_ALREADY_SENT"
    assert len(await messages_about(world, request.id)) == 1
    listed = await world.inbox.ListReservationRequests(pb.ListReservationRequestsRequest(active_only=True))
    assert [r.can_send_notice for r in listed.reservation_requests] == [False]

    # With the patron told, the cut needs no confirmation.
    cut = await world.inbox.CutReservationRequest(
        pb.CutReservationRequestRequest(
            request_id=rid(), reservation_request_id=request.id, reason=pb.CUT_REASON_ITEM_NOT_LENDABLE
        )
    )
    assert cut.reservation_request.status == pb.RESERVATION_REQUEST_STATUS_CUT

    # A message composed at the desk instead of the configured one.
    other = await world.submit(patron, "B002")
    await world.inbox.SendRequestNotice(
        pb.SendRequestNoticeRequest(
            request_id=rid(),
            reservation_request_id=other.id,
            subject="La tua richiesta",
            body="Passa in biblioteca, ne parliamo.",
        )
    )
    [free] = await messages_about(world, other.id)
    assert free.subject == "La tua richiesta" and "ne parliamo" in free.body_text


async def test_a_patron_without_e_mail_gets_a_clear_answer_and_nothing_is_recorded(world: World) -> None:
    patron = await world.enrolled_patron(email=None)
    request = await world.submit(patron, "B001")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.inbox.SendRequestNotice(
            pb.SendRequestNoticeRequest(request_id=rid(), reservation_request_id=request.id, body="x")
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(err.value) == "NO_EMAIL_ADDRESS"
    row = (
        await world.inbox.GetReservationRequest(
            pb.GetReservationRequestRequest(reservation_request_id=request.id)
        )
    ).reservation_request
    assert not row.HasField("notice_sent_at") and row.can_send_notice
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.inbox.CutReservationRequest(
            pb.CutReservationRequestRequest(
                request_id=rid(),
                reservation_request_id=request.id,
                reason=pb.CUT_REASON_ITEM_MISSING,
                send_notice=True,
            )
        )
    assert error_reason(err.value) == "NO_EMAIL_ADDRESS"
    assert not await messages_about(world, request.id)


async def test_cutting_a_request_whose_patron_was_never_told_needs_a_confirmation(world: World) -> None:
    patron = await world.enrolled_patron(email="anna@example.org")
    first = await world.submit(patron, "B001")
    second = await world.submit(patron, "B002")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.inbox.CutReservationRequest(
            pb.CutReservationRequestRequest(
                request_id=rid(), reservation_request_id=first.id, reason=pb.CUT_REASON_ITEM_MISSING
            )
        )
    assert (
        err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        and error_reason(err.value) == "NOTICE_NOT_SENT"
    )

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.inbox.CutReservationRequest(
            pb.CutReservationRequestRequest(
                request_id=rid(),
                reservation_request_id=first.id,
                reason=pb.CUT_REASON_OTHER,
                confirm_without_notice=True,
            )
        )
    assert error_fields(err.value) == ["explanation"]

    confirmed = await world.inbox.CutReservationRequest(
        pb.CutReservationRequestRequest(
            request_id=rid(),
            reservation_request_id=first.id,
            reason=pb.CUT_REASON_ITEM_MISSING,
            confirm_without_notice=True,
        )
    )
    assert confirmed.reservation_request.status == pb.RESERVATION_REQUEST_STATUS_CUT
    assert confirmed.reservation_request.cut_reason == pb.CUT_REASON_ITEM_MISSING
    assert not await messages_about(world, first.id)

    # Cutting with the "request declined" notice tells the patron why, in their language.
    with_notice = await world.inbox.CutReservationRequest(
        pb.CutReservationRequestRequest(
            request_id=rid(),
            reservation_request_id=second.id,
            reason=pb.CUT_REASON_ITEM_NOT_LENDABLE,
            send_notice=True,
            notice_message="Puoi consultarlo in sala.",
        )
    )
    assert with_notice.reservation_request.status == pb.RESERVATION_REQUEST_STATUS_CUT
    assert with_notice.reservation_request.notice_sent_at.seconds
    [message] = await messages_about(world, second.id)
    assert message.template_key == "request_cut"
    assert "non è disponibile per il prestito" in message.body_text and "in sala" in message.body_text


async def test_the_live_inbox_shows_new_requests_and_changes_as_they_happen(world: World) -> None:
    patron = await world.enrolled_patron(email="anna@example.org")
    received: list[pb.WatchInboxResponse] = []
    wanted = 3

    async def watch() -> None:
        async for event in world.inbox.WatchInbox(pb.WatchInboxRequest(made_today=True, active_only=True)):
            received.append(event)
            if len(received) == wanted:
                return

    watcher = asyncio.create_task(watch())
    inbox = world.stack.runtime("requests").state["app"]
    for _ in range(400):  # the stream sends what happens after it opened: wait until it is open
        if inbox.watchers:
            break
        await asyncio.sleep(0.05)
    request = await world.submit(patron, "B001")
    await world.inbox.SendRequestNotice(
        pb.SendRequestNoticeRequest(request_id=rid(), reservation_request_id=request.id, body="A breve.")
    )
    await world.inbox.AdvanceReservationRequest(
        pb.AdvanceReservationRequestRequest(
            request_id=rid(), reservation_request_id=request.id, mode=pb.ADVANCE_MODE_RESERVE
        )
    )
    await asyncio.wait_for(watcher, timeout=20)

    assert [e.kind for e in received] == [
        pb.INBOX_EVENT_KIND_SUBMITTED,
        pb.INBOX_EVENT_KIND_NOTICE_SENT,
        pb.INBOX_EVENT_KIND_ADVANCE_STARTED,
    ]
    assert received[0].reservation_request.id == request.id
    assert received[0].reservation_request.item_title == "Il nome della rosa"
    assert received[0].event_id < received[1].event_id < received[2].event_id

    # A screen that reconnects resumes after the last event it saw and misses nothing.
    resumed: list[pb.WatchInboxResponse] = []
    async for event in world.inbox.WatchInbox(pb.WatchInboxRequest(after_event_id=received[-1].event_id)):
        resumed.append(event)
        break
    assert resumed[0].kind == pb.INBOX_EVENT_KIND_RESERVATION_CREATED
    assert resumed[0].reservation_request.status == pb.RESERVATION_REQUEST_STATUS_ADVANCED

    # The live inbox is the desk's, not a patron's.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in world.as_patron(patron).WatchInbox(pb.WatchInboxRequest()):
            pass
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_notice_notify_refuses_later_is_not_counted_as_sent(world: World) -> None:
    patron = await world.enrolled_patron(email="anna@example.org")
    request = await world.submit(patron, "B001")
    relay = world.stack.runtime("requests").relay
    relay.stop()  # this test hands the outbox to notify itself, after changing the patron's record

    await world.inbox.SendRequestNotice(
        pb.SendRequestNoticeRequest(request_id=rid(), reservation_request_id=request.id, body="A breve.")
    )
    await set_email(world, patron, "")  # the address goes before the e-mail leaves
    await relay.drain()
    row = (
        await world.inbox.GetReservationRequest(
            pb.GetReservationRequestRequest(reservation_request_id=request.id)
        )
    ).reservation_request
    assert not row.HasField("notice_sent_at") and row.can_send_notice
    assert row.notice_failure == "NO_EMAIL_ADDRESS"
    assert row.history[-1].kind == pb.INBOX_EVENT_KIND_NOTICE_FAILED

    # With an address again, the desk sends it once more, and this time it goes.
    await set_email(world, patron, "anna.nuova@example.org")
    await world.inbox.SendRequestNotice(
        pb.SendRequestNoticeRequest(request_id=rid(), reservation_request_id=request.id, body="A breve.")
    )
    await relay.drain()
    [message] = await messages_about(world, request.id)
    assert message.recipient == "anna.nuova@example.org"
    row = (
        await world.inbox.GetReservationRequest(
            pb.GetReservationRequestRequest(reservation_request_id=request.id)
        )
    ).reservation_request
    assert row.notice_sent_at.seconds and not row.notice_failure and not row.can_send_notice


async def set_email(world: World, patron_id: str, email: str) -> None:
    current = (await world.patrons.GetPatron(ppb.GetPatronRequest(patron_id=patron_id))).patron
    await world.patrons.UpdatePatron(
        ppb.UpdatePatronRequest(
            request_id=rid(),
            etag=current.etag,
            patron=ppb.Patron(id=patron_id, email=email),
            update_mask=field_mask_pb2.FieldMask(paths=["email"]),
        )
    )
