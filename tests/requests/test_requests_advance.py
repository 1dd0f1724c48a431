"""R5 advance: exactly one reservation whatever happens (two operators at once, retries, the
reservations service down, an answer lost after the reservation was made), and refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from bibliodesk.requests.v1 import requests_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2 as rpb
from tests.helpers import error_reason

from .conftest import World, make_world, rid
from .flaky import FlakyProxy


def error_metadata(exc: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return dict(info.metadata)
    return {}


async def reservations_of(world: World, patron_id: str) -> list[rpb.Reservation]:
    reply = await world.reservations.ListReservations(rpb.ListReservationsRequest(patron_id=patron_id))
    return list(reply.reservations)


def advance(
    request_id: str, reservation_request_id: str, mode: int = pb.ADVANCE_MODE_RESERVE
) -> pb.AdvanceReservationRequestRequest:
    return pb.AdvanceReservationRequestRequest(
        request_id=request_id, reservation_request_id=reservation_request_id, mode=mode
    )  # type: ignore[arg-type]


async def test_two_operators_advance_the_same_request_at_once_and_one_reservation_exists(
    world: World,
) -> None:
    for barcode in ("B001", "B002", "B003"):
        patron = await world.enrolled_patron()
        request = await world.submit(patron, barcode)
        results = await asyncio.gather(
            world.inbox.AdvanceReservationRequest(advance(rid(), request.id)),
            world.inbox2.AdvanceReservationRequest(advance(rid(), request.id)),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, pb.AdvanceReservationRequestResponse)]
        lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(won) == 1 and len(lost) == 1, results
        assert lost[0].code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(lost[0]) in {"REQUEST_BEING_ADVANCED", "REQUEST_ALREADY_ADVANCED"}
        [reservation] = await reservations_of(world, patron)
        assert reservation.id == won[0].reservation.id

    # A double click (the same request_id twice at once) is one advance.
    patron = await world.enrolled_patron()
    request = await world.submit(patron, "B004")
    same = advance("click-1", request.id)
    first, second = await asyncio.gather(
        world.inbox.AdvanceReservationRequest(same), world.inbox.AdvanceReservationRequest(same)
    )
    assert first.reservation.id == second.reservation.id
    assert len(await reservations_of(world, patron)) == 1
    # Later, another advance of the same request is refused with a stable reason.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.inbox2.AdvanceReservationRequest(advance(rid(), request.id))
    assert error_reason(err.value) == "REQUEST_ALREADY_ADVANCED"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.inbox.CutReservationRequest(
            pb.CutReservationRequestRequest(
                request_id=rid(),
                reservation_request_id=request.id,
                reason=pb.CUT_REASON_OTHER,
                explanation="x",
                confirm_without_notice=True,
            )
        )
    assert error_reason(err.value) == "REQUEST_ALREADY_ADVANCED"


async def test_a_refused_reservation_leaves_the_request_in_the_inbox_with_the_reason(world: World) -> None:
    borrower = await world.enrolled_patron("Bianchi")
    patron = await world.enrolled_patron()
    await world.lend("B001", borrower)
    request = await world.submit(patron, "B001")

    # "Reserve and deliver" needs the copy at hand: it is on loan.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.inbox.AdvanceReservationRequest(
            advance(rid(), request.id, pb.ADVANCE_MODE_RESERVE_AND_DELIVER)
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(err.value) == "RESERVATION_REFUSED"
    why = error_metadata(err.value)["reservation_reason"]
    assert why
    back = (
        await world.inbox.GetReservationRequest(
            pb.GetReservationRequestRequest(reservation_request_id=request.id)
        )
    ).reservation_request
    assert back.status == pb.RESERVATION_REQUEST_STATUS_PENDING and back.last_refusal == why
    assert back.history[-1].kind == pb.INBOX_EVENT_KIND_RESERVATION_REFUSED
    assert not await reservations_of(world, patron)

    # The web flow's "RICHIESTA" works: the patron queues for the copy.
    done = await world.inbox.AdvanceReservationRequest(advance(rid(), request.id))
    assert done.reservation.status == rpb.RESERVATION_STATUS_WAITING_FOR_RETURN


@pytest.fixture
async def flaky_world(stack_factory: object) -> AsyncIterator[tuple[World, FlakyProxy]]:
    # The test runs the recovery task itself, when it wants to.
    world = await make_world(stack_factory, env={"BIBLIODESK_REQUESTS_RECOVERY_INTERVAL_SECONDS": "3600"})
    proxy = FlakyProxy(world.stack.address("reservations"))
    # The requests service opens its channel to reservations on first use: route it through the proxy.
    assert world.stack.host is not None
    world.stack.host.addresses["reservations"] = await proxy.start()
    yield world, proxy
    await proxy.stop()


async def test_reservations_down_then_a_retry_completes_with_one_reservation(
    flaky_world: tuple[World, FlakyProxy],
) -> None:
    world, proxy = flaky_world
    patron = await world.enrolled_patron()
    request = await world.submit(patron, "B001")

    proxy.down("CreateReservation")
    ask = advance("adv-1", request.id)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.inbox.AdvanceReservationRequest(ask)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(err.value) == "RESERVATIONS_UNAVAILABLE"
    half = (
        await world.inbox.GetReservationRequest(
            pb.GetReservationRequestRequest(reservation_request_id=request.id)
        )
    ).reservation_request
    assert half.status == pb.RESERVATION_REQUEST_STATUS_ADVANCING and not half.reservation_id
    assert not await reservations_of(world, patron)

    # Another operator cannot start a second advance meanwhile...
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.inbox2.AdvanceReservationRequest(advance(rid(), request.id))
    assert error_reason(err.value) == "REQUEST_BEING_ADVANCED"

    # ...the first operator's retry completes it.
    done = await world.inbox.AdvanceReservationRequest(ask)
    assert done.reservation_request.status == pb.RESERVATION_REQUEST_STATUS_ADVANCED
    [reservation] = await reservations_of(world, patron)
    assert done.reservation.id == reservation.id == done.reservation_request.reservation_id


async def test_an_answer_lost_after_the_reservation_was_made_is_healed_without_a_second_one(
    flaky_world: tuple[World, FlakyProxy],
) -> None:
    world, proxy = flaky_world
    patron = await world.enrolled_patron()
    request = await world.submit(patron, "B002")

    proxy.lose_answer("CreateReservation")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.inbox.AdvanceReservationRequest(advance("adv-2", request.id))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    [made] = await reservations_of(world, patron)  # the reservations service did its part

    # Nobody retries: the recovery task completes the advance once it is overdue.
    inbox = world.stack.runtime("requests").state["app"]
    assert await inbox.recover_advances() == 0  # not overdue yet: the operator may still be retrying
    world.clock.advance(minutes=5)
    assert await inbox.recover_advances() == 1
    healed = (
        await world.inbox.GetReservationRequest(
            pb.GetReservationRequestRequest(reservation_request_id=request.id)
        )
    ).reservation_request
    assert healed.status == pb.RESERVATION_REQUEST_STATUS_ADVANCED and healed.reservation_id == made.id

    # The operator's late retry gets the same reservation, still only one.
    late = await world.inbox.AdvanceReservationRequest(advance("adv-2", request.id))
    assert late.reservation.id == made.id
    assert len(await reservations_of(world, patron)) == 1
