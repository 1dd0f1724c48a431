"""ReservationService: reservations, the hold shelf, the patron's schedule."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bibliodesk.reservations.v1 import reservations_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2_grpc as pb_grpc
from bibliodesk.runtime import auth
from bibliodesk.runtime.errors import (
    NotFound,
    PermissionDenied,
    Violations,
)

from .. import convert
from ..app import use_cases as uc
from ..domain import ReservationStatus
from ..store import repository as repo
from .core import (
    M,
    Reservations,
    actor_of,
    check_barcode,
    check_branch,
    check_id,
    check_request_id,
    page_size,
)

log = logging.getLogger(__name__)

_SKEW = timedelta(minutes=5)


def _origin(v: Violations, value: int) -> Any:
    origin = convert.ORIGIN_FROM_PB.get(value)  # type: ignore[call-overload]
    v.check(origin is not None, "origin", "must be RESERVATION_ORIGIN_WEB, _DESK or _SELF_CHECK")
    return origin


class ReservationServicer(pb_grpc.ReservationServiceServicer):
    def __init__(self, core: Reservations) -> None:
        self.core = core
        self.rt = core.rt

    async def CreateReservation(
        self, request: pb.CreateReservationRequest, context: Any
    ) -> pb.CreateReservationResponse:
        principal = auth.require_kind(auth.STAFF, auth.SERVICE)
        v = Violations()
        check_request_id(v, request.request_id)
        check_id(v, "patron_id", request.patron_id)
        check_barcode(v, "item_barcode", request.item_barcode)
        check_branch(v, "pickup_branch", request.pickup_branch, required=True)
        origin = _origin(v, request.origin)
        v.max_length("note", request.note, 1000)
        v.raise_if_any()
        facts = await self.core.patron_facts(request.patron_id)
        ctx = self.core.ctx()

        def produce(session: Session) -> pb.CreateReservationResponse:
            done = uc.create_reservation(
                session,
                ctx,
                patron_id=request.patron_id,
                item_barcode=request.item_barcode,
                pickup_branch=request.pickup_branch,
                origin=origin,
                deliver_now=request.deliver_now,
                note=request.note,
                facts=facts,
                actor=actor_of(principal),
            )
            c = done.circulation
            response = pb.CreateReservationResponse(
                reservation=convert.reservation_in(
                    c, done.reservation, ctx.clock.today(), ctx.policy.loan_period_days
                )
            )
            if done.loan is not None:
                response.loan.CopyFrom(convert.loan(done.loan, title=c.item.title, author=c.item.author))
            return response

        return await self.core.mutate(
            "CreateReservation",
            request,
            pb.CreateReservationResponse,
            produce,
            item_barcode=request.item_barcode,
        )

    async def GetReservation(
        self, request: pb.GetReservationRequest, context: Any
    ) -> pb.GetReservationResponse:
        principal = auth.current_principal()
        v = Violations()
        check_id(v, "reservation_id", request.reservation_id)
        v.raise_if_any()

        def read(session: Session) -> pb.Reservation:
            found = repo.get_reservation(session, request.reservation_id)
            if found is None or (principal.is_patron and found.patron_id != principal.subject):
                raise NotFound(
                    "RESERVATION_NOT_FOUND",
                    f"no reservation {request.reservation_id}",
                    metadata={"reservation_id": request.reservation_id},
                )
            return self.core.reservation_views(session, [found])[0]

        return pb.GetReservationResponse(reservation=await self.core.read(read))

    async def ListReservations(
        self, request: pb.ListReservationsRequest, context: Any
    ) -> pb.ListReservationsResponse:
        principal = auth.current_principal()
        v = Violations()
        size = page_size(request.page_size, v)
        patron_id = request.patron_id
        if principal.is_patron:
            if patron_id and patron_id != principal.subject:
                raise PermissionDenied("NOT_YOUR_RECORD", "a patron can list only their own reservations")
            patron_id = principal.subject
        v.max_length("patron_id", patron_id, 64)
        origin = None
        if request.origin:
            origin = _origin(v, request.origin)
        statuses: list[ReservationStatus] = []
        for i, value in enumerate(request.statuses):
            status = convert.STATUS_FROM_PB.get(value)  # type: ignore[call-overload]
            if status is None:
                v.add(f"statuses[{i}]", "is not a reservation status")
            else:
                statuses.append(status)
        if request.active_only:
            v.check(
                not statuses
                or all(
                    s in (ReservationStatus.WAITING_FOR_RETURN, ReservationStatus.READY_FOR_PICKUP)
                    for s in statuses
                ),
                "active_only",
                "contradicts the closed statuses asked for",
            )
            statuses = statuses or [ReservationStatus.WAITING_FOR_RETURN, ReservationStatus.READY_FOR_PICKUP]
        check_branch(v, "pickup_branch", request.pickup_branch, required=False)
        if request.item_barcode:
            check_barcode(v, "item_barcode", request.item_barcode)
        v.raise_if_any()
        f = repo.ReservationFilter(
            patron_id=patron_id,
            origin=origin,
            statuses=tuple(statuses),
            pickup_branch=request.pickup_branch,
            item_barcode=request.item_barcode,
        )

        def read(session: Session) -> pb.ListReservationsResponse:
            found, token = repo.list_reservations(session, f, size, request.page_token)
            return pb.ListReservationsResponse(
                reservations=self.core.reservation_views(session, found), next_page_token=token
            )

        return await self.core.read(read)

    async def CancelReservation(
        self, request: pb.CancelReservationRequest, context: Any
    ) -> pb.CancelReservationResponse:
        principal = auth.require_kind(auth.STAFF, auth.PATRON, auth.SERVICE)
        v = Violations()
        check_request_id(v, request.request_id)
        check_id(v, "reservation_id", request.reservation_id)
        v.max_length("reason", request.reason, 1000)
        v.max_length("etag", request.etag, 64)
        v.raise_if_any()
        ctx = self.core.ctx()

        def produce(session: Session) -> pb.CancelReservationResponse:
            done = uc.cancel_reservation(
                session,
                ctx,
                reservation_id=request.reservation_id,
                by_patron=principal.subject if principal.is_patron else "",
                etag=request.etag,
                reason=request.reason,
                actor=actor_of(principal),
            )
            repo.attach_history(session, [done.reservation, *([done.passed_to] if done.passed_to else [])])
            c, today = done.circulation, ctx.clock.today()
            response = pb.CancelReservationResponse(
                reservation=convert.reservation_in(c, done.reservation, today, ctx.policy.loan_period_days)
            )
            if done.passed_to is not None:
                response.passed_to.CopyFrom(
                    convert.reservation_in(c, done.passed_to, today, ctx.policy.loan_period_days)
                )
            return response

        return await self.core.mutate(
            "CancelReservation",
            request,
            pb.CancelReservationResponse,
            produce,
            reservation_id=request.reservation_id,
        )

    async def _told(
        self,
        method: str,
        request: Any,
        response_type: type[M],
        *,
        called: bool,
        at: datetime | None,
        auto_expire: bool | None,
        note: str,
        etag: str,
    ) -> M:
        ctx = self.core.ctx()

        patron_id = await self.core.read(repo.patron_of_reservation, request.reservation_id)
        facts = await self.core.patron_facts(patron_id, must_exist=False) if patron_id else None

        def produce(session: Session) -> M:
            reservation, c = uc.record_patron_told(
                session,
                ctx,
                reservation_id=request.reservation_id,
                at=at,
                called=called,
                auto_expire=auto_expire,
                note=note,
                etag=etag,
                facts=facts,
            )
            repo.attach_history(session, [reservation])
            return response_type(  # type: ignore[call-arg]
                reservation=convert.reservation_in(
                    c, reservation, ctx.clock.today(), ctx.policy.loan_period_days
                )
            )

        return await self.core.mutate(
            method, request, response_type, produce, reservation_id=request.reservation_id
        )

    async def RecordPatronCalled(
        self, request: pb.RecordPatronCalledRequest, context: Any
    ) -> pb.RecordPatronCalledResponse:
        auth.require_staff()
        v = Violations()
        check_request_id(v, request.request_id)
        check_id(v, "reservation_id", request.reservation_id)
        v.max_length("note", request.note, 1000)
        v.max_length("etag", request.etag, 64)
        v.raise_if_any()
        return await self._told(
            "RecordPatronCalled",
            request,
            pb.RecordPatronCalledResponse,
            called=True,
            at=None,
            auto_expire=request.auto_expire,
            note=request.note,
            etag=request.etag,
        )

    async def RecordPatronNotified(
        self, request: pb.RecordPatronNotifiedRequest, context: Any
    ) -> pb.RecordPatronNotifiedResponse:
        auth.require_kind(auth.SERVICE, auth.STAFF)
        v = Violations()
        check_request_id(v, request.request_id)
        check_id(v, "reservation_id", request.reservation_id)
        at = None
        if request.HasField("notified_at"):
            at = request.notified_at.ToDatetime(tzinfo=self.rt.clock.now().tzinfo)
            v.check(at <= self.rt.clock.now() + _SKEW, "notified_at", "must not be in the future")
        v.raise_if_any()
        return await self._told(
            "RecordPatronNotified",
            request,
            pb.RecordPatronNotifiedResponse,
            called=False,
            at=at,
            auto_expire=None,
            note="",
            etag="",
        )

    async def ListItemsToSetAside(
        self, request: pb.ListItemsToSetAsideRequest, context: Any
    ) -> pb.ListItemsToSetAsideResponse:
        auth.require_staff()
        v = Violations()
        size = page_size(request.page_size, v)
        check_branch(v, "branch", request.branch, required=False)
        v.raise_if_any()

        def read(session: Session) -> pb.ListItemsToSetAsideResponse:
            rows, token = repo.to_set_aside(session, request.branch, size, request.page_token)
            circs = repo.read_circulations(session, [r.item_barcode for r in rows])
            response = pb.ListItemsToSetAsideResponse(next_page_token=token)
            today = self.rt.clock.today()
            for row in rows:
                c = circs[row.item_barcode]
                ready = c.find(row.id)
                if ready is None:
                    continue
                entry = response.items.add()
                entry.item.CopyFrom(convert.item(c, personal=True))
                entry.reservation.CopyFrom(
                    convert.reservation_in(c, ready, today, self.core.policy.loan_period_days)
                )
            return response

        return await self.core.read(read)

    async def ConfirmItemSetAside(
        self, request: pb.ConfirmItemSetAsideRequest, context: Any
    ) -> pb.ConfirmItemSetAsideResponse:
        auth.require_staff()
        v = Violations()
        check_request_id(v, request.request_id)
        check_id(v, "reservation_id", request.reservation_id)
        v.raise_if_any()
        ctx = self.core.ctx()

        def produce(session: Session) -> pb.ConfirmItemSetAsideResponse:
            reservation, c = uc.confirm_item_set_aside(session, ctx, reservation_id=request.reservation_id)
            repo.attach_history(session, [reservation])
            return pb.ConfirmItemSetAsideResponse(
                reservation=convert.reservation_in(
                    c, reservation, ctx.clock.today(), ctx.policy.loan_period_days
                )
            )

        return await self.core.mutate(
            "ConfirmItemSetAside",
            request,
            pb.ConfirmItemSetAsideResponse,
            produce,
            reservation_id=request.reservation_id,
        )

    async def GetPatronSchedule(
        self, request: pb.GetPatronScheduleRequest, context: Any
    ) -> pb.GetPatronScheduleResponse:
        principal = auth.current_principal()
        patron_id = request.patron_id
        if principal.is_patron:
            patron_id = patron_id or principal.subject
            auth.require_patron_or_staff(patron_id)
        v = Violations()
        check_id(v, "patron_id", patron_id)
        v.raise_if_any()
        ctx = self.core.ctx()

        def read(session: Session) -> pb.GetPatronScheduleResponse:
            schedule = uc.patron_schedule(session, ctx, patron_id)
            response = pb.GetPatronScheduleResponse(patron_id=patron_id)
            for ln, item in schedule.loans:
                response.loans.add(
                    loan=convert.loan(ln, title=item.title, author=item.author),
                    overdue=ln.due_date < schedule.today,
                )
            for entry in schedule.materials:
                on_shelf = entry.location == "ON_THE_SHELF"
                response.materials_to_deliver.add(
                    reservation=convert.reservation(
                        entry.reservation, title=entry.title, author=entry.author, expected=entry.expected
                    ),
                    location=pb.DELIVERY_LOCATION_ON_THE_SHELF
                    if on_shelf
                    else pb.DELIVERY_LOCATION_WITH_A_LIBRARY_USER,
                    expected_available_date=convert.day(entry.expected),
                    expected_wait_days=(entry.expected - schedule.today).days if entry.expected else 0,
                )
            return response

        return await self.core.read(read)

    async def ExpireOverdueReservations(
        self, request: pb.ExpireOverdueReservationsRequest, context: Any
    ) -> pb.ExpireOverdueReservationsResponse:
        auth.require_admin()
        v = Violations()
        v.check(0 <= request.limit <= 10_000, "limit", "must be between 0 and 10000")
        v.raise_if_any()
        expired, passed, reminded = await self.core.sweep_once(request.limit or 500)
        return pb.ExpireOverdueReservationsResponse(
            expired=expired, passed_to=passed, reminders_queued=reminded
        )
