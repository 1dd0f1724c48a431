"""Bad input names its field; retried mutations answer the same and change nothing twice;
holdings load with a report of rejected rows."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from bibliodesk.reservations.v1 import reservations_pb2 as pb
from tests.helpers import error_fields, error_reason

from .conftest import Desk, rid

GOOD = {
    "request_id": "r-1",
    "patron_id": "p1",
    "item_barcode": "B001",
    "pickup_branch": "CEN",
    "origin": pb.RESERVATION_ORIGIN_WEB,
}


BAD_CREATES: list[tuple[dict[str, Any], list[str]]] = [
    ({"request_id": ""}, ["request_id"]),
    ({"patron_id": ""}, ["patron_id"]),
    ({"item_barcode": ""}, ["item_barcode"]),
    ({"item_barcode": "has space"}, ["item_barcode"]),
    ({"pickup_branch": ""}, ["pickup_branch"]),
    ({"origin": pb.RESERVATION_ORIGIN_UNSPECIFIED}, ["origin"]),
    ({"note": "x" * 1001}, ["note"]),
    ({"patron_id": "", "item_barcode": "", "origin": 0}, ["patron_id", "item_barcode", "origin"]),
]


async def test_create_reservation_names_every_bad_field(desk: Desk) -> None:
    for changes, fields in BAD_CREATES:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await desk.reservations.CreateReservation(pb.CreateReservationRequest(**{**GOOD, **changes}))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, changes
        assert error_fields(exc.value) == fields


async def test_other_rpcs_name_their_bad_fields(desk: Desk) -> None:
    cases = [
        (desk.circulation.CheckOut(pb.CheckOutRequest(request_id=rid(), item_barcode="B001")), ["patron_id"]),
        (
            desk.circulation.CheckOut(pb.CheckOutRequest(item_barcode="", patron_id="p")),
            ["request_id", "item_barcode"],
        ),
        (desk.circulation.CheckIn(pb.CheckInRequest(request_id=rid(), item_barcode="a/b")), ["item_barcode"]),
        (
            desk.reservations.CancelReservation(pb.CancelReservationRequest(request_id=rid())),
            ["reservation_id"],
        ),
        (
            desk.reservations.RecordPatronCalled(pb.RecordPatronCalledRequest(reservation_id="x")),
            ["request_id"],
        ),
        (desk.reservations.ListReservations(pb.ListReservationsRequest(page_size=-1)), ["page_size"]),
        (desk.reservations.ListReservations(pb.ListReservationsRequest(statuses=[99])), ["statuses[0]"]),
        (
            desk.reservations.ListReservations(pb.ListReservationsRequest(page_token="garbage!")),
            ["page_token"],
        ),
        (desk.circulation.GetItemAvailability(pb.GetItemAvailabilityRequest()), ["item_barcodes"]),
        (
            desk.circulation.GetItemAvailability(pb.GetItemAvailabilityRequest(item_barcodes=["ok", ""])),
            ["item_barcodes[1]"],
        ),
        (desk.reservations.GetPatronSchedule(pb.GetPatronScheduleRequest()), ["patron_id"]),
        (desk.admin_circulation.ImportItems(pb.ImportItemsRequest(request_id=rid())), ["csv_content"]),
        (
            desk.admin_circulation.ImportItems(
                pb.ImportItemsRequest(request_id=rid(), csv_content="code,name\n1,x\n")
            ),
            ["csv_content"],
        ),
    ]
    for call, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert error_fields(exc.value) == fields


async def test_a_retried_mutation_answers_the_same_and_changes_nothing_twice(desk: Desk) -> None:
    out = pb.CheckOutRequest(request_id="desk-1:scan-17", item_barcode="B001", patron_id="p1", branch="CEN")
    first = await desk.circulation.CheckOut(out)
    second = await desk.circulation.CheckOut(out)
    assert first == second
    back = pb.CheckInRequest(request_id="desk-1:scan-18", item_barcode="B001", branch="CEN")
    assert await desk.circulation.CheckIn(back) == await desk.circulation.CheckIn(back)
    assert (await desk.item("B001")).state == pb.ITEM_STATE_ON_SHELF

    r = await desk.reserve("p2", "B002")
    cancel = pb.CancelReservationRequest(request_id="c-1", reservation_id=r.id)
    assert await desk.reservations.CancelReservation(cancel) == await desk.reservations.CancelReservation(
        cancel
    )


async def test_a_request_id_reused_for_something_else_is_refused(desk: Desk) -> None:
    await desk.reservations.CreateReservation(pb.CreateReservationRequest(**GOOD))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.reservations.CreateReservation(
            pb.CreateReservationRequest(**{**GOOD, "item_barcode": "B002"})
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(exc.value) == "REQUEST_ID_REUSED" and error_fields(exc.value) == ["request_id"]


async def test_a_refused_request_can_be_retried_once_the_cause_is_gone(desk: Desk) -> None:
    await desk.check_out("p9", "B003")
    request = pb.CreateReservationRequest(
        **{**GOOD, "patron_id": "p9", "item_barcode": "B003", "request_id": "x"}
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.reservations.CreateReservation(request)
    assert error_reason(exc.value) == "ALREADY_ON_LOAN_TO_PATRON"
    await desk.check_in("B003")
    made = await desk.reservations.CreateReservation(request)
    assert made.reservation.status == pb.RESERVATION_STATUS_READY_FOR_PICKUP


async def test_holdings_import_reports_rejected_rows_and_updates_known_copies(desk: Desk) -> None:
    csv_text = (
        "barcode,title,author,branch,call_number\n"
        "B001,Il nome della rosa (ed. 2012),Umberto Eco,CEN,853 ECO\n"
        "B002,Se questo è un uomo,Primo Levi,CEN,853 LEV\n"
        "N100,Nuovo libro,Autrice,,\n"
        ",Senza codice,X,CEN,\n"
        "N101,,X,CEN,\n"
        "N100,Doppione,X,CEN,\n"
    )
    dry = await desk.admin_circulation.ImportItems(
        pb.ImportItemsRequest(request_id=rid(), csv_content=csv_text, default_branch="SUD", dry_run=True)
    )
    assert (dry.created, dry.updated, dry.unchanged) == (1, 1, 1)
    with pytest.raises(grpc.aio.AioRpcError):
        await desk.item("N100")
    report = await desk.admin_circulation.ImportItems(
        pb.ImportItemsRequest(request_id=rid(), csv_content=csv_text, default_branch="SUD")
    )
    assert (report.rows_read, report.created, report.updated, report.unchanged) == (6, 1, 1, 1)
    assert [(r.line_number, r.item_barcode, r.field) for r in report.rejected] == [
        (5, "", "barcode"),
        (6, "N101", "title"),
        (7, "N100", "barcode"),
    ]
    assert "duplicates line 4" in report.rejected[2].reason
    assert (await desk.item("N100")).branch == "SUD"
    assert (await desk.item("B001")).title == "Il nome della rosa (ed. 2012)"
    chunk = await desk.admin_circulation.ImportItems(
        pb.ImportItemsRequest(
            request_id=rid(), csv_content="barcode,title,branch\nbad code,T,CEN\n", first_line_number=501
        )
    )
    assert [r.line_number for r in chunk.rejected] == [501]
    seen, token = [], ""
    while True:
        page = await desk.circulation.ListItems(pb.ListItemsRequest(page_size=2, page_token=token))
        seen += [i.barcode for i in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["B001", "B002", "B003", "B004", "N100"]
    in_sud = await desk.circulation.ListItems(pb.ListItemsRequest(branch="SUD", state=pb.ITEM_STATE_ON_SHELF))
    assert [i.barcode for i in in_sud.items] == ["N100"]


async def test_only_admins_load_holdings_and_only_staff_record_calls(desk: Desk) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.circulation.ImportItems(pb.ImportItemsRequest(request_id=rid(), csv_content="barcode\n"))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    r = await desk.reserve("p1", "B001")
    patron, _ = desk.as_patron("p1")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await patron.RecordPatronCalled(pb.RecordPatronCalledRequest(request_id=rid(), reservation_id=r.id))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await desk.reservations.ExpireOverdueReservations(pb.ExpireOverdueReservationsRequest())
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
