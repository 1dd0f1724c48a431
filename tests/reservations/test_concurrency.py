"""Many desks and patrons on one copy at once: the queue stays sound (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import grpc

from bibliodesk.reservations.v1 import reservations_pb2 as pb
from tests.helpers import error_reason

from .conftest import Desk, rid


async def _queue(desk: Desk, barcode: str) -> list[pb.Reservation]:
    reply = await desk.reservations.ListReservations(
        pb.ListReservationsRequest(item_barcode=barcode, active_only=True, page_size=200)
    )
    return list(reply.reservations)


async def test_twenty_patrons_reserve_the_same_copy_at_once(desk: Desk) -> None:
    patrons = [f"p{i:02d}" for i in range(20)]
    made = await asyncio.gather(*(desk.reserve(p, "B001", origin=pb.RESERVATION_ORIGIN_WEB) for p in patrons))
    ready = [r for r in made if r.status == pb.RESERVATION_STATUS_READY_FOR_PICKUP]
    waiting = [r for r in made if r.status == pb.RESERVATION_STATUS_WAITING_FOR_RETURN]
    assert len(ready) == 1 and len(waiting) == 19
    assert sorted(r.queue_position for r in waiting) == list(range(1, 20))
    assert (await desk.item("B001")).set_aside_for_reservation_id == ready[0].id
    # What the desk reads back agrees with what each caller was told.
    stored = {r.id: r for r in await _queue(desk, "B001")}
    assert {r.id: r.queue_position for r in waiting} == {
        i: r.queue_position for i, r in stored.items() if r.status == pb.RESERVATION_STATUS_WAITING_FOR_RETURN
    }
    # Arrival order is kept: the copy goes to position 1, then 2, ... as each holder gives up.
    order = [r.id for r in sorted(waiting, key=lambda r: r.queue_position)]
    current = ready[0].id
    for expected_next in order[:3]:
        done = await desk.reservations.CancelReservation(
            pb.CancelReservationRequest(request_id=rid(), reservation_id=current)
        )
        assert done.passed_to.id == expected_next
        current = expected_next
    remaining = [
        r for r in await _queue(desk, "B001") if r.status == pb.RESERVATION_STATUS_WAITING_FOR_RETURN
    ]
    assert sorted(r.queue_position for r in remaining) == list(range(1, 17))
    assert [r.id for r in sorted(remaining, key=lambda r: r.queue_position)] == order[3:]


async def test_cancellations_in_the_middle_of_the_queue_at_once_leave_no_gap(desk: Desk) -> None:
    await desk.check_out("borrower", "B002")
    made = [await desk.reserve(f"p{i}", "B002") for i in range(8)]
    await asyncio.gather(
        *(
            desk.reservations.CancelReservation(
                pb.CancelReservationRequest(request_id=rid(), reservation_id=r.id)
            )
            for r in made[1:7:2]
        )
    )
    left = sorted(await _queue(desk, "B002"), key=lambda r: r.queue_position)
    assert [r.queue_position for r in left] == [1, 2, 3, 4, 5]
    assert [r.patron_id for r in left] == ["p0", "p2", "p4", "p6", "p7"]


async def test_check_in_racing_a_cancellation_ends_consistent(desk: Desk) -> None:
    await desk.check_out("borrower", "B002")
    a = await desk.reserve("a", "B002")
    b = await desk.reserve("b", "B002")
    results = await asyncio.gather(
        desk.check_in("B002"),
        desk.reservations.CancelReservation(
            pb.CancelReservationRequest(request_id=rid(), reservation_id=a.id)
        ),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)]
    # Whichever ran first, a is cancelled and the copy waits for b on the hold shelf.
    assert (await desk.get(a.id)).status == pb.RESERVATION_STATUS_CANCELLED
    got_b = await desk.get(b.id)
    assert got_b.status == pb.RESERVATION_STATUS_READY_FOR_PICKUP and got_b.queue_position == 0
    item = await desk.item("B002")
    assert item.state == pb.ITEM_STATE_SET_ASIDE and item.set_aside_for_reservation_id == b.id
    # b is told; a notice queued for a before the cancellation is dropped at delivery (see
    # test_notices_to_notify), never sent as "ready".
    assert desk.outbox()[-1]["patron_id"] == "b"


async def test_two_desks_check_out_the_same_copy_at_once(desk: Desk) -> None:
    results = await asyncio.gather(
        desk.check_out("p1", "B003"), desk.check_out("p2", "B003"), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, pb.CheckOutResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 1 and len(refused) == 1
    assert error_reason(refused[0]) == "ITEM_ON_LOAN"
    assert (await desk.item("B003")).borrower_patron_id == ok[0].loan.patron_id


async def test_the_same_request_id_sent_concurrently_makes_one_reservation(desk: Desk) -> None:
    request = pb.CreateReservationRequest(
        request_id="inbox-request:42",
        patron_id="p1",
        item_barcode="B001",
        pickup_branch="CEN",
        origin=pb.RESERVATION_ORIGIN_WEB,
    )
    replies = await asyncio.gather(*(desk.service_reservations.CreateReservation(request) for _ in range(8)))
    assert len({r.reservation.id for r in replies}) == 1
    assert len(await _queue(desk, "B001")) == 1
    again = await desk.service_reservations.CreateReservation(request)
    assert again.reservation.id == replies[0].reservation.id
    assert again.reservation.status == pb.RESERVATION_STATUS_READY_FOR_PICKUP


async def test_the_schema_itself_refuses_a_second_ready_or_a_duplicate_position(desk: Desk) -> None:
    """Defence in depth: even a buggy writer cannot put two patrons at one place in the queue."""
    import pytest
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from services.reservations.store.tables import reservations

    await desk.check_out("borrower", "B002")
    first = await desk.reserve("p1", "B002")
    await desk.reserve("p2", "B001")
    now = desk.stack.clock.now()
    base = {
        "pickup_branch": "CEN",
        "origin": "DESK",
        "status_reason": "",
        "created_at": now,
        "auto_expire": True,
        "note": "",
        "patron_card_barcode": "",
        "pickup_period_days": 7,
        "version": 1,
    }
    db = desk.stack.runtime("reservations").db
    clashes = [
        {
            "id": rid(),
            "patron_id": "x1",
            "item_barcode": "B002",
            "status": "WAITING_FOR_RETURN",
            "queue_seq": 99,
            "queue_position": first.queue_position,
        },
        {
            "id": rid(),
            "patron_id": "x2",
            "item_barcode": "B001",
            "status": "READY_FOR_PICKUP",
            "queue_seq": 99,
        },
        {
            "id": rid(),
            "patron_id": "p1",
            "item_barcode": "B002",
            "status": "WAITING_FOR_RETURN",
            "queue_seq": 98,
            "queue_position": 7,
        },
        {
            "id": rid(),
            "patron_id": "x3",
            "item_barcode": "B002",
            "status": "READY_FOR_PICKUP",
            "queue_seq": 97,
            "queue_position": 3,
        },
    ]
    for row in clashes:
        with pytest.raises(IntegrityError):
            db.write_sync(lambda s, row=row: s.execute(insert(reservations).values(**base, **row)))


async def test_readers_never_see_a_half_done_change(desk: Desk) -> None:
    """While desks pass a copy around, every read shows one consistent state of it."""
    patrons = [f"p{i}" for i in range(6)]
    for p in patrons:
        await desk.reserve(p, "B001")
    stop = asyncio.Event()

    async def churn() -> None:
        for _ in range(3):
            for r in await _queue(desk, "B001"):
                if r.status == pb.RESERVATION_STATUS_READY_FOR_PICKUP:
                    await desk.reservations.CancelReservation(
                        pb.CancelReservationRequest(request_id=rid(), reservation_id=r.id)
                    )
                    await desk.reserve(r.patron_id, "B001")
        stop.set()

    async def look() -> int:
        seen = 0
        while not stop.is_set():
            situation = await desk.circulation.GetItemSituation(
                pb.GetItemSituationRequest(item_barcode="B001")
            )
            ready = [r for r in situation.queue if r.status == pb.RESERVATION_STATUS_READY_FOR_PICKUP]
            assert situation.item.state == pb.ITEM_STATE_SET_ASIDE and len(ready) == 1
            assert situation.item.set_aside_for_reservation_id == ready[0].id
            waiting = [r.queue_position for r in situation.queue if r.queue_position]
            assert waiting == list(range(1, len(waiting) + 1))
            await desk.circulation.GetItemAvailability(pb.GetItemAvailabilityRequest(item_barcodes=["B001"]))
            seen += 1
        return seen

    _, *looks = await asyncio.gather(churn(), look(), look())
    assert all(n > 0 for n in looks)
