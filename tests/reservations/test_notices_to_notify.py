"""Across services: the ready notice goes through notify, and its delivery starts the pickup clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from bibliodesk.notify.v1 import notify_pb2 as npb
from bibliodesk.notify.v1 import notify_pb2_grpc as npb_grpc
from bibliodesk.reservations.v1 import reservations_pb2 as pb
from tests.patrons.support import FAST_ENV, admin, adult_category, complete_and_enroll, operator, pre_register

from .conftest import HOLDINGS, PATIENT, TTL, circulation_stub, reservation_stub, rid

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, pump: Callable[[], Awaitable[Any]]
) -> T:
    """Runs the relays until ``done`` holds (generously bounded: a loaded machine is slow, and no
    timing is asserted)."""
    for _ in range(600):
        await pump()
        value = await probe()
        if done(value):
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened; last value: {value!r}")


async def test_ready_notice_is_sent_once_and_its_delivery_starts_the_pickup_clock(stack_factory: Any) -> None:
    stack = await stack_factory("patrons", "notify", "reservations", env={**FAST_ENV, **PATIENT})
    boss = await admin(stack)

    await adult_category(boss, loan_limit=10, reservation_limit=5, pickup_period_days=5)
    desk = await operator(stack)
    patron_id = await pre_register(stack)
    await complete_and_enroll(desk, patron_id)
    borrower = await pre_register(stack, given="Anna", surname="Bianchi", email="anna.bianchi@example.org")
    await complete_and_enroll(desk, borrower)

    staff_token = stack.token(kind="staff", roles=("admin",), ttl=TTL)
    channel = stack.channel("reservations", staff_token)
    reservations, circulation = (
        reservation_stub(channel),
        circulation_stub(channel),
    )
    notify = npb_grpc.NotifyServiceStub(stack.channel("notify", staff_token))
    await circulation.ImportItems(pb.ImportItemsRequest(request_id=rid(), csv_content=HOLDINGS))
    await circulation.CheckOut(pb.CheckOutRequest(request_id=rid(), item_barcode="B002", patron_id=borrower))
    r = (
        await reservations.CreateReservation(
            pb.CreateReservationRequest(
                request_id=rid(),
                patron_id=patron_id,
                item_barcode="B002",
                pickup_branch="CEN",
                origin=pb.RESERVATION_ORIGIN_WEB,
            )
        )
    ).reservation
    back = await circulation.CheckIn(pb.CheckInRequest(request_id=rid(), item_barcode="B002"))
    assert back.ready_reservation.id == r.id and not back.ready_reservation.HasField("pickup_deadline")

    async def pump() -> None:
        await stack.runtime("reservations").relay.drain()
        await stack.runtime("notify").relay.drain()

    async def read() -> pb.Reservation:
        return (await reservations.GetReservation(pb.GetReservationRequest(reservation_id=r.id))).reservation

    told = await eventually(read, lambda x: x.HasField("notified_at"), pump=pump)
    notified = told.notified_at.ToDatetime().replace(tzinfo=stack.clock.now().tzinfo)
    deadline = told.pickup_deadline.ToDatetime().replace(tzinfo=notified.tzinfo)
    assert deadline == notified + timedelta(days=5)

    history = await notify.ListMessages(npb.ListMessagesRequest(patron_id=patron_id))
    ours = [m for m in history.messages if m.reference == f"reservation:{r.id}"]
    assert len(ours) == 1
    assert ours[0].template_key == "item_back_from_loan" and ours[0].status == npb.MESSAGE_STATUS_SENT
