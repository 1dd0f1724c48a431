"""The walkthrough's V1–V6 at the desk, through the real gRPC server and client."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import grpc
import pytest

from bibliodesk.reservations.v1 import reservations_pb2 as pb
from tests.helpers import error_reason

from .conftest import TTL, Desk, circulation_stub, reservation_stub, rid

S = pb


async def test_v1_item_on_the_shelf_is_set_aside_and_listed_to_fetch(desk: Desk) -> None:
    r = await desk.reserve("p1", "B001", origin=pb.RESERVATION_ORIGIN_WEB)
    assert r.status == S.RESERVATION_STATUS_READY_FOR_PICKUP
    assert r.status_reason == "ITEM_ON_SHELF" and r.item_title == "Il nome della rosa"
    assert not r.HasField("pickup_deadline")  # the clock starts only once the patron is told
    item = await desk.item("B001")
    assert item.state == S.ITEM_STATE_SET_ASIDE and item.set_aside_for_reservation_id == r.id

    listed = await desk.reservations.ListItemsToSetAside(pb.ListItemsToSetAsideRequest(branch="CEN"))
    assert [(e.item.barcode, e.reservation.id) for e in listed.items] == [("B001", r.id)]
    assert desk.outbox() == []  # nobody is told before the copy is actually on the hold shelf

    confirmed = await desk.reservations.ConfirmItemSetAside(
        pb.ConfirmItemSetAsideRequest(request_id=rid(), reservation_id=r.id)
    )
    assert confirmed.reservation.HasField("fetched_at")
    listed = await desk.reservations.ListItemsToSetAside(pb.ListItemsToSetAsideRequest(branch="CEN"))
    assert list(listed.items) == []
    [notice] = desk.outbox()
    assert notice["template_key"] == "reservation_ready" and notice["reference"] == f"reservation:{r.id}"
    assert notice["patron_id"] == "p1" and notice["variables"]["title"] == "Il nome della rosa"
    assert notice["key"] == f"reservation:{r.id}:ready"


async def test_v4_item_on_loan_queues_with_expected_wait_and_return_serves_the_first(desk: Desk) -> None:
    loan = (await desk.check_out("borrower", "B002")).loan
    assert loan.due_date == "2027-01-02"  # 30 days from 2026-12-03
    first = await desk.reserve("p1", "B002")
    second = await desk.reserve("p2", "B002")
    assert (first.status, first.queue_position) == (S.RESERVATION_STATUS_WAITING_FOR_RETURN, 1)
    assert first.expected_available_date == "2027-01-02"
    assert second.queue_position == 2 and second.expected_available_date == "2027-02-01"

    desk.stack.clock.advance(days=5)
    back = await desk.check_in("B002")
    assert back.loan.HasField("returned_at")
    assert back.ready_reservation.id == first.id
    assert back.ready_reservation.status == S.RESERVATION_STATUS_READY_FOR_PICKUP
    assert back.ready_reservation.status_reason == "ITEM_RETURNED"
    assert back.item.state == S.ITEM_STATE_SET_ASIDE
    assert (await desk.get(second.id)).queue_position == 1
    [notice] = desk.outbox()
    assert notice["template_key"] == "item_back_from_loan" and notice["patron_id"] == "p1"
    assert notice["reference"] == f"reservation:{first.id}"
    history = [(h.from_status, h.to_status, h.reason) for h in (await desk.get(first.id)).history]
    assert history == [
        (S.RESERVATION_STATUS_UNSPECIFIED, S.RESERVATION_STATUS_WAITING_FOR_RETURN, "ITEM_ON_LOAN"),
        (S.RESERVATION_STATUS_WAITING_FOR_RETURN, S.RESERVATION_STATUS_READY_FOR_PICKUP, "ITEM_RETURNED"),
    ]


async def test_v2_called_patron_who_never_comes_expires_and_the_copy_passes_on(desk: Desk) -> None:
    a = await desk.reserve("a", "B003")
    b = await desk.reserve("b", "B003")
    called = await desk.reservations.RecordPatronCalled(
        pb.RecordPatronCalledRequest(
            request_id=rid(), reservation_id=a.id, auto_expire=True, note="al telefono"
        )
    )
    start = desk.stack.clock.now()
    assert called.reservation.called_at.ToDatetime().replace(tzinfo=start.tzinfo) == start
    deadline = called.reservation.pickup_deadline.ToDatetime().replace(tzinfo=start.tzinfo)
    assert deadline == start + timedelta(days=7)  # the configured default: patrons is unreachable

    desk.stack.clock.advance(days=6)
    nothing = await desk.admin_reservations.ExpireOverdueReservations(pb.ExpireOverdueReservationsRequest())
    assert list(nothing.expired) == []

    desk.stack.clock.advance(days=2)
    swept = await desk.admin_reservations.ExpireOverdueReservations(pb.ExpireOverdueReservationsRequest())
    assert [r.id for r in swept.expired] == [a.id]
    assert swept.expired[0].status == S.RESERVATION_STATUS_EXPIRED
    assert swept.expired[0].status_reason == "PICKUP_DEADLINE_PASSED"
    assert [r.id for r in swept.passed_to] == [b.id]
    assert swept.passed_to[0].status_reason == "PASSED_ON"
    assert (await desk.item("B003")).set_aside_for_reservation_id == b.id
    # The day before the deadline a reminder was queued; at the deadline the expiry notice.
    assert [n["template_key"] for n in desk.outbox()] == ["pickup_reminder", "reservation_expired"]
    # The copy was never fetched from the open shelf: it is on the list to fetch for b now.
    listed = await desk.reservations.ListItemsToSetAside(pb.ListItemsToSetAsideRequest())
    assert [e.reservation.id for e in listed.items] == [b.id]

    # b was told by e-mail (notify reports the delivery): same rule, then back to the shelf.
    await desk.service_reservations.RecordPatronNotified(
        pb.RecordPatronNotifiedRequest(request_id=rid(), reservation_id=b.id)
    )
    desk.stack.clock.advance(days=8)
    swept = await desk.admin_reservations.ExpireOverdueReservations(pb.ExpireOverdueReservationsRequest())
    assert [r.id for r in swept.expired] == [b.id] and list(swept.passed_to) == []
    assert (await desk.item("B003")).state == S.ITEM_STATE_ON_SHELF


async def test_v2_without_automatic_expiry_the_reservation_waits(desk: Desk) -> None:
    a = await desk.reserve("a", "B003")
    await desk.reservations.RecordPatronCalled(
        pb.RecordPatronCalledRequest(request_id=rid(), reservation_id=a.id, auto_expire=False)
    )
    desk.stack.clock.advance(days=30)
    swept = await desk.admin_reservations.ExpireOverdueReservations(pb.ExpireOverdueReservationsRequest())
    assert list(swept.expired) == []
    assert (await desk.get(a.id)).status == S.RESERVATION_STATUS_READY_FOR_PICKUP


async def test_notice_delivery_starts_the_clock_once_and_never_moves_it(desk: Desk) -> None:
    a = await desk.reserve("a", "B001")
    first = await desk.service_reservations.RecordPatronNotified(
        pb.RecordPatronNotifiedRequest(request_id=rid(), reservation_id=a.id)
    )
    desk.stack.clock.advance(days=2)
    again = await desk.service_reservations.RecordPatronNotified(
        pb.RecordPatronNotifiedRequest(request_id=rid(), reservation_id=a.id)
    )
    assert again.reservation.pickup_deadline == first.reservation.pickup_deadline
    assert again.reservation.notified_at == first.reservation.notified_at
    waiting = await desk.reserve("b", "B001")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.service_reservations.RecordPatronNotified(
            pb.RecordPatronNotifiedRequest(request_id=rid(), reservation_id=waiting.id)
        )
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(exc.value) == "RESERVATION_NOT_READY"


async def test_v6_delivery_checks_out_to_the_holder_and_refuses_anyone_else(desk: Desk) -> None:
    r = await desk.reserve("holder", "B001")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.check_out("someone-else", "B001")
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(exc.value) == "ITEM_SET_ASIDE_FOR_ANOTHER_PATRON"
    out = await desk.check_out("holder", "B001")
    assert out.fulfilled_reservation.id == r.id
    assert out.fulfilled_reservation.status == S.RESERVATION_STATUS_FULFILLED
    assert out.loan.reservation_id == r.id and out.item.state == S.ITEM_STATE_ON_LOAN
    assert out.item.borrower_patron_id == "holder"
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.check_out("someone-else", "B001")
    assert error_reason(exc.value) == "ITEM_ON_LOAN"


async def test_reserve_and_deliver_now_fulfils_at_once_only_when_free(desk: Desk) -> None:
    reply = await desk.reservations.CreateReservation(
        pb.CreateReservationRequest(
            request_id=rid(),
            patron_id="p1",
            item_barcode="B001",
            pickup_branch="CEN",
            origin=pb.RESERVATION_ORIGIN_WEB,
            deliver_now=True,
        )
    )
    assert reply.reservation.status == S.RESERVATION_STATUS_FULFILLED
    assert reply.reservation.status_reason == "DELIVERED_NOW"
    assert reply.loan.patron_id == "p1" and reply.loan.reservation_id == reply.reservation.id
    assert (await desk.item("B001")).state == S.ITEM_STATE_ON_LOAN
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.reserve("p2", "B001", deliver_now=True)
    assert error_reason(exc.value) == "ITEM_NOT_AVAILABLE"


async def test_cancel_a_ready_reservation_passes_the_copy_on_and_patrons_only_cancel_their_own(
    desk: Desk,
) -> None:
    a = await desk.reserve("a", "B001")
    b = await desk.reserve("b", "B001")
    as_b, _ = desk.as_patron("b")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await as_b.CancelReservation(pb.CancelReservationRequest(request_id=rid(), reservation_id=a.id))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    as_a, _ = desk.as_patron("a")
    done = await as_a.CancelReservation(
        pb.CancelReservationRequest(request_id=rid(), reservation_id=a.id, reason="non mi serve più")
    )
    assert done.reservation.status == S.RESERVATION_STATUS_CANCELLED
    assert done.reservation.status_reason == "CANCELLED_BY_PATRON"
    assert done.passed_to.id == b.id and done.passed_to.status == S.RESERVATION_STATUS_READY_FOR_PICKUP
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.reservations.CancelReservation(
            pb.CancelReservationRequest(request_id=rid(), reservation_id=a.id)
        )
    assert error_reason(exc.value) == "RESERVATION_CLOSED"
    staff = await desk.reservations.CancelReservation(
        pb.CancelReservationRequest(request_id=rid(), reservation_id=b.id)
    )
    assert staff.reservation.status_reason == "CANCELLED_BY_STAFF" and not staff.HasField("passed_to")
    assert (await desk.item("B001")).state == S.ITEM_STATE_ON_SHELF


async def test_stale_etag_is_refused(desk: Desk) -> None:
    a = await desk.reserve("a", "B001")
    await desk.reservations.RecordPatronCalled(
        pb.RecordPatronCalledRequest(request_id=rid(), reservation_id=a.id, auto_expire=True, etag=a.etag)
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.reservations.CancelReservation(
            pb.CancelReservationRequest(request_id=rid(), reservation_id=a.id, etag=a.etag)
        )
    assert exc.value.code() == grpc.StatusCode.ABORTED and error_reason(exc.value) == "ETAG_MISMATCH"


async def test_v3_v5_staff_list_filters_web_reservations_and_shows_the_item_situation(desk: Desk) -> None:
    await desk.check_out("borrower", "B002")
    web = await desk.reserve("w1", "B002", origin=pb.RESERVATION_ORIGIN_WEB)
    desk_made = await desk.reserve("d1", "B001", origin=pb.RESERVATION_ORIGIN_DESK)
    web2 = await desk.reserve("w2", "B004", origin=pb.RESERVATION_ORIGIN_WEB, pickup_branch="NORD")

    only_web = await desk.reservations.ListReservations(
        pb.ListReservationsRequest(origin=pb.RESERVATION_ORIGIN_WEB)
    )
    assert {r.id for r in only_web.reservations} == {web.id, web2.id}
    assert all(r.origin == pb.RESERVATION_ORIGIN_WEB for r in only_web.reservations)
    waiting_web = await desk.reservations.ListReservations(
        pb.ListReservationsRequest(
            origin=pb.RESERVATION_ORIGIN_WEB,
            statuses=[pb.RESERVATION_STATUS_WAITING_FOR_RETURN],
            pickup_branch="CEN",
        )
    )
    assert [r.id for r in waiting_web.reservations] == [web.id]

    situation = await desk.circulation.GetItemSituation(pb.GetItemSituationRequest(item_barcode="B002"))
    assert situation.item.state == S.ITEM_STATE_ON_LOAN
    assert situation.item.due_date == "2027-01-02" and not situation.overdue
    assert situation.item.borrower_patron_id == "borrower"
    assert [r.id for r in situation.queue] == [web.id]

    page1 = await desk.reservations.ListReservations(pb.ListReservationsRequest(page_size=2))
    page2 = await desk.reservations.ListReservations(
        pb.ListReservationsRequest(page_size=2, page_token=page1.next_page_token)
    )
    assert len(page1.reservations) == 2 and len(page2.reservations) == 1 and not page2.next_page_token
    paged = [r.id for r in [*page1.reservations, *page2.reservations]]
    assert sorted(paged) == sorted([web.id, desk_made.id, web2.id])


async def test_v6_patron_sees_only_their_own_schedule(desk: Desk) -> None:
    await desk.check_out("p1", "B003")
    await desk.check_out("other", "B002")
    ready = await desk.reserve("p1", "B001", origin=pb.RESERVATION_ORIGIN_WEB)
    waiting = await desk.reserve("p1", "B002", origin=pb.RESERVATION_ORIGIN_WEB)
    await desk.reserve("other", "B004")

    mine, _ = desk.as_patron("p1")
    schedule = await mine.GetPatronSchedule(pb.GetPatronScheduleRequest())
    assert schedule.patron_id == "p1"
    assert [(ln.loan.item_barcode, ln.loan.due_date, ln.overdue) for ln in schedule.loans] == [
        ("B003", "2027-01-02", False)
    ]
    materials = [
        (m.reservation.id, m.location, m.expected_available_date, m.expected_wait_days)
        for m in schedule.materials_to_deliver
    ]
    assert materials == [
        (ready.id, pb.DELIVERY_LOCATION_ON_THE_SHELF, "", 0),
        (waiting.id, pb.DELIVERY_LOCATION_WITH_A_LIBRARY_USER, "2027-01-02", 30),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await mine.GetPatronSchedule(pb.GetPatronScheduleRequest(patron_id="other"))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = await mine.ListReservations(pb.ListReservationsRequest())
    assert {r.patron_id for r in listed.reservations} == {"p1"}
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await mine.ListReservations(pb.ListReservationsRequest(patron_id="other"))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    staff_view = await desk.reservations.GetPatronSchedule(pb.GetPatronScheduleRequest(patron_id="other"))
    assert [ln.loan.item_barcode for ln in staff_view.loans] == ["B002"]

    desk.stack.clock.advance(days=31)
    late = await mine.GetPatronSchedule(pb.GetPatronScheduleRequest())
    assert late.loans[0].overdue


async def test_patrons_cannot_reserve_directly_nor_see_who_borrowed(desk: Desk) -> None:
    await desk.check_out("borrower", "B002")
    as_patron, circulation = desk.as_patron("p1")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await as_patron.CreateReservation(
            pb.CreateReservationRequest(
                request_id=rid(),
                patron_id="p1",
                item_barcode="B001",
                pickup_branch="CEN",
                origin=pb.RESERVATION_ORIGIN_WEB,
            )
        )
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    seen = await circulation.GetItemAvailability(
        pb.GetItemAvailabilityRequest(item_barcodes=["B002", "NOPE"])
    )
    assert seen.items[0].state == S.ITEM_STATE_ON_LOAN and seen.items[0].due_date == "2027-01-02"
    assert seen.items[0].borrower_patron_id == ""
    assert (seen.items[1].item_barcode, seen.items[1].exists) == ("NOPE", False)
    staff = await desk.circulation.GetItemAvailability(pb.GetItemAvailabilityRequest(item_barcodes=["B002"]))
    assert staff.items[0].borrower_patron_id == "borrower"


async def test_availability_for_a_newcomer_counts_the_queue(desk: Desk) -> None:
    await desk.check_out("borrower", "B002")
    await desk.reserve("p1", "B002")
    reply = await desk.service_reservations.GetReservation(
        pb.GetReservationRequest(reservation_id=(await desk.reserve("p2", "B001")).id)
    )
    assert reply.reservation.patron_id == "p2"
    availability = await desk.circulation.GetItemAvailability(
        pb.GetItemAvailabilityRequest(item_barcodes=["B002", "B001", "B003"])
    )
    by = {a.item_barcode: a for a in availability.items}
    assert (by["B002"].queue_length, by["B002"].expected_available_date) == (1, "2027-02-01")
    assert (by["B001"].state, by["B001"].queue_length, by["B001"].expected_available_date) == (
        S.ITEM_STATE_SET_ASIDE,
        1,
        "2027-01-02",
    )
    assert (by["B003"].state, by["B003"].expected_available_date) == (S.ITEM_STATE_ON_SHELF, "2026-12-03")


async def test_duplicate_reservation_and_check_in_of_an_item_on_the_shelf_are_refused(desk: Desk) -> None:
    await desk.reserve("p1", "B001")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.reserve("p1", "B001")
    assert (
        exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        and error_reason(exc.value) == "ALREADY_RESERVED"
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.check_in("B003")
    assert error_reason(exc.value) == "ITEM_NOT_ON_LOAN"
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.reserve("p1", "UNKNOWN")
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND and error_reason(exc.value) == "ITEM_NOT_FOUND"


async def test_a_notice_about_a_reservation_closed_meanwhile_is_dropped_and_its_delivery_changes_nothing(
    desk: Desk,
) -> None:
    r = await desk.reserve("p1", "B001")
    await desk.reservations.ConfirmItemSetAside(
        pb.ConfirmItemSetAsideRequest(request_id=rid(), reservation_id=r.id)
    )
    [notice] = desk.outbox()
    await desk.reservations.CancelReservation(
        pb.CancelReservationRequest(request_id=rid(), reservation_id=r.id)
    )
    # notify is unreachable in this stack: returning without an error means nothing was sent.
    await desk.stack.runtime("reservations").state["app"].deliver_notice(notice, notice["key"])
    late = await desk.service_reservations.RecordPatronNotified(
        pb.RecordPatronNotifiedRequest(request_id=rid(), reservation_id=r.id)
    )
    assert late.reservation.status == S.RESERVATION_STATUS_CANCELLED
    assert not late.reservation.HasField("notified_at") and not late.reservation.HasField("pickup_deadline")


async def test_the_background_sweeper_expires_without_anyone_asking(stack_factory: Any) -> None:
    from .conftest import ENV, HOLDINGS

    stack = await stack_factory(
        "reservations", env={**ENV, "BIBLIODESK_RESERVATIONS_SWEEP_INTERVAL_SECONDS": "0.05"}
    )
    channel = stack.channel("reservations", stack.token(kind="staff", roles=("admin",), ttl=TTL))
    reservations, circulation = (
        reservation_stub(channel),
        circulation_stub(channel),
    )
    await circulation.ImportItems(pb.ImportItemsRequest(request_id=rid(), csv_content=HOLDINGS))
    r = (
        await reservations.CreateReservation(
            pb.CreateReservationRequest(
                request_id=rid(),
                patron_id="p1",
                item_barcode="B001",
                pickup_branch="CEN",
                origin=pb.RESERVATION_ORIGIN_DESK,
            )
        )
    ).reservation
    await reservations.RecordPatronCalled(
        pb.RecordPatronCalledRequest(request_id=rid(), reservation_id=r.id, auto_expire=True)
    )
    stack.clock.advance(days=8)
    for _ in range(1500):  # bounded wait for the background task; no timing asserted
        got = (await reservations.GetReservation(pb.GetReservationRequest(reservation_id=r.id))).reservation
        if got.status == S.RESERVATION_STATUS_EXPIRED:
            break
        await asyncio.sleep(0.02)
    assert got.status == S.RESERVATION_STATUS_EXPIRED
    assert (
        await circulation.GetItem(pb.GetItemRequest(item_barcode="B001"))
    ).item.state == S.ITEM_STATE_ON_SHELF


async def test_desk_answers_when_patrons_is_down_or_nothing_is_set_aside(desk: Desk) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.circulation.CheckOut(
            pb.CheckOutRequest(request_id=rid(), item_barcode="B001", patron_card_barcode="2000000000017")
        )
    assert (
        exc.value.code() == grpc.StatusCode.UNAVAILABLE and error_reason(exc.value) == "PATRONS_UNAVAILABLE"
    )
    await desk.check_out("borrower", "B002")
    waiting = await desk.reserve("p1", "B002")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.reservations.RecordPatronCalled(
            pb.RecordPatronCalledRequest(request_id=rid(), reservation_id=waiting.id, auto_expire=True)
        )
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(exc.value) == "RESERVATION_NOT_READY"


async def test_a_reminder_goes_out_once_the_day_before_an_automatic_deadline(desk: Desk) -> None:
    a = await desk.reserve("a", "B001")
    b = await desk.reserve("b", "B003")
    await desk.reservations.RecordPatronCalled(
        pb.RecordPatronCalledRequest(request_id=rid(), reservation_id=a.id, auto_expire=True)
    )
    await desk.reservations.RecordPatronCalled(
        pb.RecordPatronCalledRequest(request_id=rid(), reservation_id=b.id, auto_expire=False)
    )
    desk.stack.clock.advance(days=5)
    early = await desk.admin_reservations.ExpireOverdueReservations(pb.ExpireOverdueReservationsRequest())
    assert early.reminders_queued == 0
    desk.stack.clock.advance(days=1, hours=1)
    swept = await desk.admin_reservations.ExpireOverdueReservations(pb.ExpireOverdueReservationsRequest())
    again = await desk.admin_reservations.ExpireOverdueReservations(pb.ExpireOverdueReservationsRequest())
    assert (swept.reminders_queued, again.reminders_queued) == (1, 0)
    [reminder] = [n for n in desk.outbox() if n["template_key"] == "pickup_reminder"]
    assert reminder["patron_id"] == "a" and reminder["variables"]["pickup_deadline"] == "2026-12-10"
    assert (await desk.get(a.id)).HasField("reminded_at")
    assert not (await desk.get(b.id)).HasField("reminded_at")  # no automatic expiry: nothing to warn about


async def test_metrics_show_the_hold_shelf_and_the_queue(desk: Desk) -> None:
    await desk.check_out("borrower", "B002")
    await desk.reserve("a", "B001")
    await desk.reserve("b", "B002")
    text = desk.stack.host.metrics.render()  # type: ignore[union-attr]
    assert 'bibliodesk_reservations_active{state="ready_for_pickup"} 1.0' in text
    assert 'bibliodesk_reservations_active{state="waiting_for_return"} 1.0' in text
    assert 'bibliodesk_reservations_active{state="to_fetch"} 1.0' in text


async def test_returned_at_another_branch_the_copy_travels_and_the_patron_is_told_on_arrival(
    desk: Desk,
) -> None:
    await desk.check_out("borrower", "B002")
    r = await desk.reserve("p1", "B002", pickup_branch="NORD")
    back = await desk.circulation.CheckIn(
        pb.CheckInRequest(request_id=rid(), item_barcode="B002", branch="CEN")
    )
    assert back.ready_reservation.id == r.id and not back.ready_reservation.HasField("fetched_at")
    assert desk.outbox() == []  # not on NORD's hold shelf yet: nobody is told
    for branch in ("CEN", "NORD"):  # the desk that sends it and the desk that receives it
        listed = await desk.reservations.ListItemsToSetAside(pb.ListItemsToSetAsideRequest(branch=branch))
        assert [e.reservation.id for e in listed.items] == [r.id]
    assert (
        list((await desk.reservations.ListItemsToSetAside(pb.ListItemsToSetAsideRequest(branch="SUD"))).items)
        == []
    )
    await desk.reservations.ConfirmItemSetAside(
        pb.ConfirmItemSetAsideRequest(request_id=rid(), reservation_id=r.id)
    )
    [notice] = desk.outbox()
    assert notice["template_key"] == "item_back_from_loan" and notice["variables"]["pickup_branch"] == "NORD"
