"""CirculationService: items, availability, holdings import, check-out and check-in."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from bibliodesk.reservations.v1 import reservations_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2_grpc as pb_grpc
from bibliodesk.runtime import auth
from bibliodesk.runtime.errors import (
    NotFound,
    Violations,
)

from .. import convert
from ..app import use_cases as uc
from ..domain import valid_barcode
from ..store import repository as repo
from .core import (
    MAX_CSV_BYTES,
    Reservations,
    actor_of,
    check_barcode,
    check_branch,
    check_id,
    check_request_id,
    page_size,
)

log = logging.getLogger(__name__)


class CirculationServicer(pb_grpc.CirculationServiceServicer):
    def __init__(self, core: Reservations) -> None:
        self.core = core
        self.rt = core.rt

    async def GetItemAvailability(
        self, request: pb.GetItemAvailabilityRequest, context: Any
    ) -> pb.GetItemAvailabilityResponse:
        principal = auth.current_principal()
        v = Violations()
        v.check(1 <= len(request.item_barcodes) <= 500, "item_barcodes", "must list 1 to 500 barcodes")
        for i, barcode in enumerate(request.item_barcodes):
            v.check(
                valid_barcode(barcode), f"item_barcodes[{i}]", "must be 1-64 letters, digits, '.', '_' or '-'"
            )
        v.raise_if_any()
        personal = not principal.is_patron

        def read(session: Session) -> pb.GetItemAvailabilityResponse:
            circs = repo.read_circulations(session, list(dict.fromkeys(request.item_barcodes)))
            today = self.rt.clock.today()
            response = pb.GetItemAvailabilityResponse()
            for barcode in request.item_barcodes:
                c = circs.get(barcode)
                if c is None:
                    response.items.add(item_barcode=barcode, exists=False)
                    continue
                entry = response.items.add(
                    item_barcode=barcode,
                    exists=True,
                    title=c.item.title,
                    author=c.item.author,
                    branch=c.item.branch,
                    state=convert.STATE_TO_PB[c.item.state],
                    queue_length=len(c.active),
                    expected_available_date=c.expected_date_for_newcomer(
                        today, self.core.policy.loan_period_days
                    ).isoformat(),
                )
                if c.loan is not None:
                    entry.due_date = c.loan.due_date.isoformat()
                    if personal:
                        entry.borrower_patron_id = c.loan.patron_id
            return response

        return await self.core.read(read)

    async def _circulation(self, barcode: str) -> Any:
        c = await self.core.read(repo.read_circulation, barcode)
        if c is None:
            raise NotFound(
                "ITEM_NOT_FOUND", f"no item copy has barcode {barcode}", metadata={"item_barcode": barcode}
            )
        return c

    async def GetItem(self, request: pb.GetItemRequest, context: Any) -> pb.GetItemResponse:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        v = Violations()
        check_barcode(v, "item_barcode", request.item_barcode)
        v.raise_if_any()
        c = await self._circulation(request.item_barcode)
        return pb.GetItemResponse(item=convert.item(c, personal=True))

    async def ListItems(self, request: pb.ListItemsRequest, context: Any) -> pb.ListItemsResponse:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        v = Violations()
        size = page_size(request.page_size, v)
        check_branch(v, "branch", request.branch, required=False)
        state = None
        if request.state:
            state = convert.STATE_FROM_PB.get(request.state)  # type: ignore[call-overload]
            v.check(state is not None, "state", "is not an item state")
        v.raise_if_any()

        def read(session: Session) -> pb.ListItemsResponse:
            barcodes, token = repo.list_items(session, request.branch, state, size, request.page_token)
            circs = repo.read_circulations(session, barcodes)
            return pb.ListItemsResponse(
                items=[convert.item(circs[b], personal=True) for b in barcodes], next_page_token=token
            )

        return await self.core.read(read)

    async def GetItemSituation(
        self, request: pb.GetItemSituationRequest, context: Any
    ) -> pb.GetItemSituationResponse:
        auth.require_kind(auth.STAFF, auth.SERVICE)
        v = Violations()
        check_barcode(v, "item_barcode", request.item_barcode)
        v.raise_if_any()

        def read(session: Session) -> pb.GetItemSituationResponse:
            c = repo.read_circulation(session, request.item_barcode)
            if c is None:
                raise NotFound(
                    "ITEM_NOT_FOUND",
                    f"no item copy has barcode {request.item_barcode}",
                    metadata={"item_barcode": request.item_barcode},
                )
            queue = ([c.ready] if c.ready else []) + c.waiting
            repo.attach_history(session, queue)
            today = self.rt.clock.today()
            return pb.GetItemSituationResponse(
                item=convert.item(c, personal=True),
                overdue=bool(c.loan and c.loan.due_date < today),
                queue=[convert.reservation_in(c, r, today, self.core.policy.loan_period_days) for r in queue],
            )

        response = await self.core.read(read)
        item = response.item
        if item.state == pb.ITEM_STATE_ON_LOAN and not item.borrower_card_barcode:
            # Lent while patrons was unreachable: ask for the card number now (V5 shows the card).
            facts = await self.core.patron_facts(item.borrower_patron_id, must_exist=False)
            if facts is not None:
                item.borrower_card_barcode = facts.card_barcode
        return response

    async def ImportItems(self, request: pb.ImportItemsRequest, context: Any) -> pb.ImportItemsResponse:
        auth.require_admin()
        v = Violations()
        check_request_id(v, request.request_id)
        if v.required("csv_content", request.csv_content):
            v.check(
                len(request.csv_content.encode()) <= MAX_CSV_BYTES,
                "csv_content",
                f"must be at most {MAX_CSV_BYTES // (1024 * 1024)} MiB: send the file in chunks",
                "TOO_LONG",
            )
        v.check(request.first_line_number >= 0, "first_line_number", "must not be negative")
        check_branch(v, "default_branch", request.default_branch, required=False)
        v.raise_if_any()
        ctx = self.core.ctx()

        def produce(session: Session) -> pb.ImportItemsResponse:
            report = uc.import_items(
                session,
                ctx,
                csv_content=request.csv_content,
                first_line_number=request.first_line_number or 2,
                default_branch=request.default_branch,
                dry_run=request.dry_run,
            )
            return pb.ImportItemsResponse(
                rows_read=report.rows_read,
                created=report.created,
                updated=report.updated,
                unchanged=report.unchanged,
                rejected=[
                    pb.RejectedRow(
                        line_number=r.line_number, item_barcode=r.barcode, field=r.field, reason=r.reason
                    )
                    for r in report.rejected
                ],
            )

        if request.dry_run:
            return await self.core.read(produce)
        return await self.core.mutate("ImportItems", request, pb.ImportItemsResponse, produce)

    async def CheckOut(self, request: pb.CheckOutRequest, context: Any) -> pb.CheckOutResponse:
        principal = auth.require_kind(auth.STAFF, auth.SERVICE)
        v = Violations()
        check_request_id(v, request.request_id)
        check_barcode(v, "item_barcode", request.item_barcode)
        if request.patron_id:
            check_id(v, "patron_id", request.patron_id)
        elif request.patron_card_barcode:
            check_barcode(v, "patron_card_barcode", request.patron_card_barcode)
        else:
            v.add("patron_id", "is required (or give patron_card_barcode)", "REQUIRED")
        check_branch(v, "branch", request.branch, required=False)
        v.raise_if_any()
        patron_id = request.patron_id or await self.core.patron_by_card(request.patron_card_barcode)
        facts = await self.core.patron_facts(patron_id)
        ctx = self.core.ctx()

        def produce(session: Session) -> pb.CheckOutResponse:
            done = uc.check_out(
                session,
                ctx,
                item_barcode=request.item_barcode,
                patron_id=patron_id,
                facts=facts,
                branch=request.branch,
                actor=actor_of(principal),
                card_barcode=request.patron_card_barcode,
            )
            c = done.circulation
            response = pb.CheckOutResponse(
                loan=convert.loan(done.loan, title=c.item.title, author=c.item.author),
                item=convert.item(c, personal=True),
            )
            if done.fulfilled is not None:
                repo.attach_history(session, [done.fulfilled])
                response.fulfilled_reservation.CopyFrom(
                    convert.reservation(done.fulfilled, title=c.item.title, author=c.item.author)
                )
            return response

        return await self.core.mutate(
            "CheckOut", request, pb.CheckOutResponse, produce, item_barcode=request.item_barcode
        )

    async def CheckIn(self, request: pb.CheckInRequest, context: Any) -> pb.CheckInResponse:
        principal = auth.require_kind(auth.STAFF, auth.SERVICE)
        v = Violations()
        check_request_id(v, request.request_id)
        check_barcode(v, "item_barcode", request.item_barcode)
        check_branch(v, "branch", request.branch, required=False)
        v.raise_if_any()
        ctx = self.core.ctx()

        def produce(session: Session) -> pb.CheckInResponse:
            done = uc.check_in(
                session,
                ctx,
                item_barcode=request.item_barcode,
                branch=request.branch,
                actor=actor_of(principal),
            )
            c = done.circulation
            response = pb.CheckInResponse(
                loan=convert.loan(done.loan, title=c.item.title, author=c.item.author),
                item=convert.item(c, personal=True),
            )
            if done.ready is not None:
                repo.attach_history(session, [done.ready])
                response.ready_reservation.CopyFrom(
                    convert.reservation_in(c, done.ready, ctx.clock.today(), ctx.policy.loan_period_days)
                )
            return response

        return await self.core.mutate(
            "CheckIn", request, pb.CheckInResponse, produce, item_barcode=request.item_barcode
        )
