"""With the real patrons service: the category's pickup period and limits, the card at the desk."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
import pytest

from bibliodesk.reservations.v1 import reservations_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2_grpc as pb_grpc
from tests.helpers import error_reason
from tests.patrons.support import FAST_ENV, admin, adult_category, complete_and_enroll, operator, pre_register

from .conftest import HOLDINGS, PATIENT, TTL, circulation_stub, reservation_stub, rid


async def _setup(
    stack_factory: Any,
) -> tuple[Any, pb_grpc.ReservationServiceStub, pb_grpc.CirculationServiceStub]:
    stack = await stack_factory(
        "patrons", "reservations", env={**FAST_ENV, **PATIENT, "BIBLIODESK_NOTIFY_ADDRESS": "127.0.0.1:9"}
    )
    boss = await admin(stack)
    await adult_category(boss, loan_limit=1, reservation_limit=2, pickup_period_days=10)
    channel = stack.channel("reservations", stack.token(kind="staff", roles=("admin",), ttl=TTL))
    reservations, circulation = (
        reservation_stub(channel),
        circulation_stub(channel),
    )
    await circulation.ImportItems(pb.ImportItemsRequest(request_id=rid(), csv_content=HOLDINGS))
    return stack, reservations, circulation


def _create(patron_id: str, barcode: str) -> pb.CreateReservationRequest:
    return pb.CreateReservationRequest(
        request_id=rid(),
        patron_id=patron_id,
        item_barcode=barcode,
        pickup_branch="CEN",
        origin=pb.RESERVATION_ORIGIN_WEB,
    )


async def test_category_pickup_period_limits_and_card_come_from_patrons(stack_factory: Any) -> None:
    stack, reservations, circulation = await _setup(stack_factory)
    desk = await operator(stack)
    patron_id = await pre_register(stack)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await reservations.CreateReservation(_create(patron_id, "B001"))
    assert error_reason(exc.value) == "PATRON_NOT_ENROLLED"

    enrolled = await complete_and_enroll(desk, patron_id)
    assert enrolled.card_barcode
    first = (await reservations.CreateReservation(_create(patron_id, "B001"))).reservation
    assert first.patron_card_barcode == enrolled.card_barcode
    called = await reservations.RecordPatronCalled(
        pb.RecordPatronCalledRequest(request_id=rid(), reservation_id=first.id, auto_expire=True)
    )
    start = stack.clock.now()
    deadline = called.reservation.pickup_deadline.ToDatetime().replace(tzinfo=start.tzinfo)
    assert deadline == start + timedelta(days=10)  # the category's period, not the default 7

    await reservations.CreateReservation(_create(patron_id, "B002"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await reservations.CreateReservation(_create(patron_id, "B003"))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(exc.value) == "RESERVATION_LIMIT_REACHED"

    # At the desk the card is scanned: the set-aside copy goes to its holder.
    out = await circulation.CheckOut(
        pb.CheckOutRequest(request_id=rid(), item_barcode="B001", patron_card_barcode=enrolled.card_barcode)
    )
    assert out.loan.patron_id == patron_id and out.fulfilled_reservation.id == first.id
    assert out.item.borrower_card_barcode == enrolled.card_barcode
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await circulation.CheckOut(
            pb.CheckOutRequest(request_id=rid(), item_barcode="B003", patron_id=patron_id)
        )
    assert error_reason(exc.value) == "LOAN_LIMIT_REACHED"
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await circulation.CheckOut(
            pb.CheckOutRequest(request_id=rid(), item_barcode="B003", patron_card_barcode="NO-SUCH-CARD")
        )
    assert error_reason(exc.value) == "CARD_NOT_FOUND"


async def test_item_situation_finds_the_card_of_a_loan_made_while_patrons_was_down(
    stack_factory: Any,
) -> None:
    from services.reservations.app import use_cases as uc

    stack, _, circulation = await _setup(stack_factory)
    patron_id = await pre_register(stack)
    enrolled = await complete_and_enroll(await operator(stack), patron_id)
    rt = stack.runtime("reservations")
    ctx = uc.Ctx(rt.clock, rt.state["app"].policy)
    # What CheckOut records when patrons cannot be asked: the loan, without a card number.
    rt.db.write_sync(
        lambda s: uc.check_out(
            s, ctx, item_barcode="B003", patron_id=patron_id, facts=None, branch="CEN", actor="t"
        )
    )
    situation = await circulation.GetItemSituation(pb.GetItemSituationRequest(item_barcode="B003"))
    assert situation.item.borrower_card_barcode == enrolled.card_barcode
