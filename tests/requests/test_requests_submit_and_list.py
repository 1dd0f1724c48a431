"""R1 submission rules, the patron's own requests, and the desk's inbox list (R2/R3)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from bibliodesk.patrons.v1 import patrons_pb2 as ppb
from bibliodesk.requests.v1 import requests_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2 as rpb
from tests.helpers import error_fields, error_reason

from .conftest import World, rid


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value


async def test_submission_is_refused_with_a_clear_reason(world: World) -> None:
    patron = await world.enrolled_patron()
    borrower = await world.enrolled_patron("Bianchi")

    err = await refused(world.submit(patron, "NOPE999"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and error_reason(err) == "ITEM_NOT_FOUND"

    await world.lend("B001", patron)
    err = await refused(world.submit(patron, "B001"))
    assert error_reason(err) == "ITEM_ALREADY_ON_LOAN"

    await world.submit(patron, "B002")
    err = await refused(world.submit(patron, "B002"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and error_reason(err) == "ALREADY_REQUESTED"

    # The category allows 3: a reservation at the desk + 2 requests fill it.
    await world.reservations.CreateReservation(
        rpb.CreateReservationRequest(
            request_id=rid(),
            patron_id=patron,
            item_barcode="B004",
            pickup_branch="CEN",
            origin=rpb.RESERVATION_ORIGIN_DESK,
        )
    )
    err = await refused(world.submit(patron, "B004"))
    assert error_reason(err) == "ALREADY_RESERVED"
    await world.submit(patron, "B003")
    err = await refused(world.submit(patron, "B005"))
    assert error_reason(err) == "RESERVATION_LIMIT_REACHED"

    # A blocked patron may not ask at all.
    await world.patrons.SuspendPatron(
        ppb.SuspendPatronRequest(request_id=rid(), patron_id=borrower, reason="libri non restituiti")
    )
    err = await refused(world.submit(borrower, "B005"))
    assert error_reason(err) == "PATRON_BLOCKED"

    # Nor may a person who pre-registered but was never enrolled at the desk.
    created = await world.patrons.CreatePatron(
        ppb.CreatePatronRequest(
            request_id=rid(),
            privacy_consent=True,
            details=ppb.PatronDetails(
                given_name="Nuovo",
                surname="Utente",
                birth_date="1999-01-01",
                birth_place="Bari",
                email="nuovo@example.org",
                home_branch="CEN",
                address=ppb.Address(street="Via Roma 1", postal_code="70121", city="Bari", country_code="IT"),
            ),
        )
    )
    err = await refused(world.submit(created.patron.id, "B001"))
    assert error_reason(err) == "PATRON_NOT_ENROLLED"


async def test_bad_input_names_every_field(world: World) -> None:
    patron = await world.enrolled_patron()
    err = await refused(
        world.as_patron(patron).SubmitReservationRequest(pb.SubmitReservationRequestRequest(note="x" * 501))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(error_fields(err)) == {"request_id", "item_barcode", "note"}

    err = await refused(
        world.inbox.SubmitReservationRequest(
            pb.SubmitReservationRequestRequest(request_id=rid(), item_barcode="B001")
        )
    )
    assert error_fields(err) == ["patron_id"]  # staff must say for whom

    err = await refused(
        world.inbox.ListReservationRequests(
            pb.ListReservationRequestsRequest(made_on="03/12/2026", page_size=1000, page_token="not-a-token")
        )
    )
    assert set(error_fields(err)) == {"made_on", "page_size", "page_token"}

    err = await refused(world.inbox.AdvanceReservationRequest(pb.AdvanceReservationRequestRequest()))
    assert set(error_fields(err)) == {"request_id", "reservation_request_id", "mode"}

    err = await refused(
        world.inbox.CutReservationRequest(
            pb.CutReservationRequestRequest(
                request_id=rid(), reservation_request_id="x", explanation="y" * 1001
            )
        )
    )
    assert set(error_fields(err)) == {"reason", "explanation"}

    err = await refused(
        world.inbox.SendRequestNotice(
            pb.SendRequestNoticeRequest(request_id=rid(), reservation_request_id="x", subject="Avviso")
        )
    )
    assert error_fields(err) == ["body"]

    err = await refused(world.inbox.GetReservationRequest(pb.GetReservationRequestRequest()))
    assert error_fields(err) == ["reservation_request_id"]
    err = await refused(
        world.as_patron(patron).WithdrawReservationRequest(pb.WithdrawReservationRequestRequest())
    )
    assert set(error_fields(err)) == {"request_id", "reservation_request_id"}
    err = await refused(
        world.inbox.GetReservationRequest(
            pb.GetReservationRequestRequest(reservation_request_id="no-such-request")
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND and error_reason(err) == "REQUEST_NOT_FOUND"


async def test_a_retried_submission_returns_the_first_answer_and_makes_one_request(world: World) -> None:
    patron = await world.enrolled_patron()
    me = world.as_patron(patron)
    ask = pb.SubmitReservationRequestRequest(request_id="form-42", item_barcode="B001", note="grazie")
    first = await me.SubmitReservationRequest(ask)
    again = await me.SubmitReservationRequest(ask)
    assert again.reservation_request.id == first.reservation_request.id
    listed = await world.inbox.ListReservationRequests(pb.ListReservationRequestsRequest(patron_id=patron))
    assert len(listed.reservation_requests) == 1

    # The same key for another request is a client bug, said so.
    err = await refused(
        me.SubmitReservationRequest(
            pb.SubmitReservationRequestRequest(request_id="form-42", item_barcode="B002")
        )
    )
    assert error_reason(err) == "REQUEST_ID_REUSED" and error_fields(err) == ["request_id"]

    # Another patron choosing the same key gets their own request, not the first patron's answer.
    other = await world.enrolled_patron("Neri")
    theirs = await world.as_patron(other).SubmitReservationRequest(ask)
    assert theirs.reservation_request.patron_id == other


async def test_a_patron_sees_and_withdraws_only_their_own_requests(world: World) -> None:
    anna = await world.enrolled_patron("Anna")
    bruno = await world.enrolled_patron("Bruno")
    annas = await world.submit(anna, "B001")
    await world.submit(bruno, "B002")

    mine = await world.as_patron(anna).ListReservationRequests(pb.ListReservationRequestsRequest())
    assert [r.id for r in mine.reservation_requests] == [annas.id]
    err = await refused(
        world.as_patron(anna).ListReservationRequests(pb.ListReservationRequestsRequest(patron_id=bruno))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED

    as_bruno = world.as_patron(bruno)
    err = await refused(
        as_bruno.GetReservationRequest(pb.GetReservationRequestRequest(reservation_request_id=annas.id))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await refused(
        as_bruno.WithdrawReservationRequest(
            pb.WithdrawReservationRequestRequest(request_id=rid(), reservation_request_id=annas.id)
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await refused(
        as_bruno.AdvanceReservationRequest(
            pb.AdvanceReservationRequestRequest(
                request_id=rid(), reservation_request_id=annas.id, mode=pb.ADVANCE_MODE_RESERVE
            )
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED

    withdrawn = await world.as_patron(anna).WithdrawReservationRequest(
        pb.WithdrawReservationRequestRequest(request_id=rid(), reservation_request_id=annas.id)
    )
    assert withdrawn.reservation_request.status == pb.RESERVATION_REQUEST_STATUS_WITHDRAWN
    assert not withdrawn.reservation_request.can_send_notice
    err = await refused(
        world.inbox.AdvanceReservationRequest(
            pb.AdvanceReservationRequestRequest(
                request_id=rid(), reservation_request_id=annas.id, mode=pb.ADVANCE_MODE_RESERVE
            )
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and error_reason(err) == "REQUEST_WITHDRAWN"
    # Withdrawn, it no longer counts: the patron may ask again.
    await world.submit(anna, "B001")


async def test_the_inbox_filters_orders_and_pages(world: World) -> None:
    anna = await world.enrolled_patron("Anna")
    bruno = await world.enrolled_patron("Bruno")
    older = await world.submit(anna, "B001")
    world.clock.advance(days=1)  # the rest is "today"
    r2 = await world.submit(anna, "B002")
    r3 = await world.submit(bruno, "B003")
    r4 = await world.submit(bruno, "B004", pickup_branch="NORD")
    await world.inbox.CutReservationRequest(
        pb.CutReservationRequestRequest(
            request_id=rid(),
            reservation_request_id=r3.id,
            reason=pb.CUT_REASON_ITEM_MISSING,
            confirm_without_notice=True,
        )
    )

    async def ids(**kw: object) -> list[str]:
        reply = await world.inbox.ListReservationRequests(pb.ListReservationRequestsRequest(**kw))  # type: ignore[arg-type]
        return [r.id for r in reply.reservation_requests]

    assert await ids() == [r4.id, r3.id, r2.id, older.id]  # newest first
    assert await ids(order=pb.LIST_ORDER_OLDEST_FIRST) == [older.id, r2.id, r3.id, r4.id]
    assert await ids(made_today=True) == [r4.id, r3.id, r2.id]
    yesterday = (world.clock.now() - timedelta(days=1)).astimezone(world.clock.tz).date().isoformat()
    assert await ids(made_on=yesterday) == [older.id]
    assert await ids(made_today=True, active_only=True) == [r4.id, r2.id]
    assert await ids(statuses=[pb.RESERVATION_REQUEST_STATUS_CUT]) == [r3.id]
    assert await ids(pickup_branch="NORD") == [r4.id]
    assert await ids(patron_id=anna) == [r2.id, older.id]

    # Keyset pages: every row exactly once, and a token only works with its own filters.
    seen: list[str] = []
    token = ""
    while True:
        page = await world.inbox.ListReservationRequests(
            pb.ListReservationRequestsRequest(page_size=3, page_token=token, order=pb.LIST_ORDER_OLDEST_FIRST)
        )
        seen += [r.id for r in page.reservation_requests]
        token = page.next_page_token
        if not token:
            break
        err = await refused(
            world.inbox.ListReservationRequests(
                pb.ListReservationRequestsRequest(page_size=3, page_token=token)
            )
        )
        assert error_fields(err) == ["page_token"]
    assert seen == [older.id, r2.id, r3.id, r4.id]


async def test_submissions_at_the_same_moment_respect_the_rules(world: World) -> None:
    patron = await world.enrolled_patron()
    me = world.as_patron(patron)

    def ask(barcode: str) -> object:
        return me.SubmitReservationRequest(
            pb.SubmitReservationRequestRequest(request_id=rid(), item_barcode=barcode)
        )

    # The same item twice (two browser tabs): one request.
    results = await asyncio.gather(ask("B001"), ask("B001"), return_exceptions=True)
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(errors) == 1 and error_reason(errors[0]) == "ALREADY_REQUESTED", results

    # Four more items at once with room for two more (the category allows 3): exactly two pass.
    results = await asyncio.gather(
        *(ask(b) for b in ("B002", "B003", "B004", "B005")), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(errors) == 2 and {error_reason(e) for e in errors} == {"RESERVATION_LIMIT_REACHED"}, results
    listed = await world.inbox.ListReservationRequests(pb.ListReservationRequestsRequest(patron_id=patron))
    assert len(listed.reservation_requests) == 3
