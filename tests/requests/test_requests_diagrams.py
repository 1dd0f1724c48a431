"""The operator manual's three summary diagrams, across separate requests, reservations and patrons
servers: a web request is only a request until the desk advances it."""

from __future__ import annotations

from bibliodesk.requests.v1 import requests_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2 as rpb

from .conftest import World, rid


async def test_diagram_1_item_on_the_shelf_is_set_aside_when_the_request_is_advanced(world: World) -> None:
    patron = await world.enrolled_patron()
    request = await world.submit(patron, "B001", note="Passo venerdì")
    assert request.status == pb.RESERVATION_REQUEST_STATUS_PENDING
    assert request.item_title == "Il nome della rosa" and request.pickup_branch == "CEN"

    # R2: the desk sees it in today's inbox, marked "on the shelf".
    today = await world.inbox.ListReservationRequests(
        pb.ListReservationRequestsRequest(made_today=True, active_only=True)
    )
    [row] = today.reservation_requests
    assert row.id == request.id and row.patron_id == patron
    assert row.item_availability.state == rpb.ITEM_STATE_ON_SHELF
    assert row.can_send_notice
    assert world.stack.host is not None  # operations see the inbox's backlog in the metrics
    assert 'bibliodesk_inbox_requests{status="pending"} 1.0' in world.stack.host.metrics.render().splitlines()

    # R5: advance with "RICHIESTA" (reserve, not deliver).
    advanced = await world.inbox.AdvanceReservationRequest(
        pb.AdvanceReservationRequestRequest(
            request_id=rid(), reservation_request_id=request.id, mode=pb.ADVANCE_MODE_RESERVE
        )
    )
    assert advanced.reservation_request.status == pb.RESERVATION_REQUEST_STATUS_ADVANCED
    reservation = advanced.reservation
    assert advanced.reservation_request.reservation_id == reservation.id
    assert reservation.status == rpb.RESERVATION_STATUS_READY_FOR_PICKUP
    assert reservation.origin == rpb.RESERVATION_ORIGIN_WEB

    # V1: the copy is set aside for the patron; the request left the active inbox.
    item = (await world.circulation.GetItem(rpb.GetItemRequest(item_barcode="B001"))).item
    assert item.state == rpb.ITEM_STATE_SET_ASIDE and item.set_aside_for_reservation_id == reservation.id
    active = await world.inbox.ListReservationRequests(pb.ListReservationRequestsRequest(active_only=True))
    assert not active.reservation_requests

    # The other option of R5, for a patron standing at the desk: reserve and check out at once.
    other = await world.enrolled_patron()
    request = await world.submit(other, "B005")
    advanced = await world.inbox.AdvanceReservationRequest(
        pb.AdvanceReservationRequestRequest(
            request_id=rid(), reservation_request_id=request.id, mode=pb.ADVANCE_MODE_RESERVE_AND_DELIVER
        )
    )
    assert advanced.reservation.status == rpb.RESERVATION_STATUS_FULFILLED
    assert advanced.reservation_request.advance_mode == pb.ADVANCE_MODE_RESERVE_AND_DELIVER
    item = (await world.circulation.GetItem(rpb.GetItemRequest(item_barcode="B005"))).item
    assert item.state == rpb.ITEM_STATE_ON_LOAN and item.borrower_patron_id == other


async def test_diagram_2_item_on_loan_waits_for_its_return_then_is_ready(world: World) -> None:
    borrower = await world.enrolled_patron("Bianchi")
    patron = await world.enrolled_patron("Verdi")
    await world.lend("B002", borrower)

    request = await world.submit(patron, "B002")
    [row] = (
        await world.inbox.ListReservationRequests(pb.ListReservationRequestsRequest())
    ).reservation_requests
    assert row.item_availability.state == rpb.ITEM_STATE_ON_LOAN
    assert row.item_availability.due_date  # the desk sees when it is due back

    advanced = await world.inbox.AdvanceReservationRequest(
        pb.AdvanceReservationRequestRequest(
            request_id=rid(), reservation_request_id=request.id, mode=pb.ADVANCE_MODE_RESERVE
        )
    )
    waiting = advanced.reservation
    assert waiting.status == rpb.RESERVATION_STATUS_WAITING_FOR_RETURN and waiting.queue_position == 1

    # V4: the borrower returns it; the reservation is signalled and the item set aside.
    back = await world.circulation.CheckIn(
        rpb.CheckInRequest(request_id=rid(), item_barcode="B002", branch="CEN")
    )
    assert back.ready_reservation.id == waiting.id
    now = (
        await world.reservations.GetReservation(rpb.GetReservationRequest(reservation_id=waiting.id))
    ).reservation
    assert now.status == rpb.RESERVATION_STATUS_READY_FOR_PICKUP
    assert back.item.state == rpb.ITEM_STATE_SET_ASIDE


async def test_diagram_3_the_patron_sees_a_reservation_only_after_the_advance(world: World) -> None:
    patron = await world.enrolled_patron()
    own = world.patron_reservations(patron)
    request = await world.submit(patron, "B003")

    # The patron's web schedule shows no reservation: it is only a request...
    schedule = await own.GetPatronSchedule(rpb.GetPatronScheduleRequest())
    assert not schedule.materials_to_deliver
    mine = await world.as_patron(patron).ListReservationRequests(pb.ListReservationRequestsRequest())
    assert [r.id for r in mine.reservation_requests] == [request.id]
    assert mine.reservation_requests[0].status == pb.RESERVATION_REQUEST_STATUS_PENDING

    await world.inbox.AdvanceReservationRequest(
        pb.AdvanceReservationRequestRequest(
            request_id=rid(), reservation_request_id=request.id, mode=pb.ADVANCE_MODE_RESERVE
        )
    )

    # ...and, once advanced, a real reservation marked as coming from the web (V3).
    schedule = await own.GetPatronSchedule(rpb.GetPatronScheduleRequest())
    [material] = schedule.materials_to_deliver
    assert material.reservation.item_barcode == "B003"
    assert material.reservation.origin == rpb.RESERVATION_ORIGIN_WEB
    assert material.location == rpb.DELIVERY_LOCATION_ON_THE_SHELF
    mine = await world.as_patron(patron).GetReservationRequest(
        pb.GetReservationRequestRequest(reservation_request_id=request.id)
    )
    assert mine.reservation_request.status == pb.RESERVATION_REQUEST_STATUS_ADVANCED
    assert not mine.reservation_request.advanced_by  # the patron is not shown operator accounts
    assert {h.actor for h in mine.reservation_request.history} == {f"patron:{patron}", "staff"}
    assert [h.kind for h in mine.reservation_request.history] == [
        pb.INBOX_EVENT_KIND_SUBMITTED,
        pb.INBOX_EVENT_KIND_ADVANCE_STARTED,
        pb.INBOX_EVENT_KIND_RESERVATION_CREATED,
    ]
