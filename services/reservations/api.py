"""The gRPC servicers: validate, authorise, ask peers what is needed, run one use case in one
transaction (idempotent by request_id), answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bibliodesk.patrons.v1 import patrons_pb2, patrons_pb2_grpc
from bibliodesk.reservations.v1 import reservations_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2_grpc as pb_grpc
from bibliodesk.runtime import auth
from bibliodesk.runtime.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    Violations,
)
from bibliodesk.runtime.idempotency import idempotent
from bibliodesk.runtime.service import ServiceRuntime

from . import convert
from .app import use_cases as uc
from .domain import ReservationStatus, valid_barcode
from .store import repository as repo

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

PEER_TIMEOUT = 5.0
MAX_PAGE = 200
DEFAULT_PAGE = 50
MAX_CSV_BYTES = 20 * 1024 * 1024


def actor_of(principal: auth.Principal) -> str:
    return f"{principal.kind}:{principal.subject}"


def page_size(value: int, v: Violations) -> int:
    v.check(value >= 0, "page_size", "must not be negative")
    return min(value or DEFAULT_PAGE, MAX_PAGE)


def check_barcode(v: Violations, field: str, value: str) -> None:
    if v.required(field, value):
        v.check(valid_barcode(value), field, "must be 1-64 letters, digits, '.', '_' or '-'")


def check_id(v: Violations, field: str, value: str) -> None:
    if v.required(field, value):
        v.check(len(value) <= 64, field, "must be at most 64 characters", "TOO_LONG")


def check_request_id(v: Violations, value: str) -> None:
    if v.required("request_id", value):
        v.max_length("request_id", value, 200)


def check_branch(v: Violations, field: str, value: str, *, required: bool) -> None:
    if required and not v.required(field, value):
        return
    v.max_length(field, value, 64)


class Reservations:
    """What both servicers share: the runtime, the policy, peers, the sweeper, the relay handler."""

    def __init__(self, rt: ServiceRuntime) -> None:
        self.rt = rt
        self.policy = uc.Policy.from_settings(rt.settings)
        self._patrons: patrons_pb2_grpc.PatronServiceAsyncStub | None = None

    def register_metrics(self) -> None:
        """Gauges a librarian would watch: the hold shelf, the queue, what is still to fetch."""

        def reader(key: str) -> Callable[[], float]:
            return lambda: float(self.rt.db.read_sync(repo.counts_by_status).get(key, 0))

        for key, label in (
            ("READY_FOR_PICKUP", "ready_for_pickup"),
            ("WAITING_FOR_RETURN", "waiting_for_return"),
            ("TO_FETCH", "to_fetch"),
        ):
            self.rt.metrics.gauge(f'bibliodesk_reservations_active{{state="{label}"}}', reader(key))

    def ctx(self) -> uc.Ctx:
        return uc.Ctx(self.rt.clock, self.policy)

    @property
    def patrons(self) -> patrons_pb2_grpc.PatronServiceAsyncStub:
        if self._patrons is None:
            self._patrons = patrons_pb2_grpc.PatronServiceStub(  # type: ignore[assignment]
                self.rt.peers.channel("patrons")
            )
        return self._patrons

    # -- writes

    async def mutate(
        self,
        method: str,
        request: Message,
        response_type: type[M],
        produce: Callable[[Session], M],
        *,
        item_barcode: str = "",
        reservation_id: str = "",
    ) -> M:
        """One transaction: lock the copy concerned, then the idempotency look-up, then the use case.
        Locking first makes a concurrent retry of the same request wait and find the first answer."""

        def work(session: Session) -> M:
            barcode = item_barcode or (
                repo.item_barcode_of(session, reservation_id) if reservation_id else ""
            )
            if barcode:
                uc.lock_item(session, barcode)
            return idempotent(
                session,
                self.rt.idempotency,
                method,
                request,
                lambda: produce(session),
                response_type,
                now=self.rt.clock.now(),
            )

        try:
            response = await self.rt.db.write(work)
        except IntegrityError:
            # Two first calls with the same request_id raced past the look-up (no copy to lock):
            # the second now finds the stored answer.
            response = await self.rt.db.write(work)
        self.rt.relay.wake()
        return response

    # -- peers

    async def patron_facts(self, patron_id: str, *, must_exist: bool = True) -> uc.PatronFacts | None:
        """The patron's standing from the patrons service; None (use configured defaults) when it
        cannot be reached, so the desk keeps working while patrons is down. ``must_exist``: an
        unknown patron is refused (new reservations and loans), else treated as unreachable."""
        try:
            reply = await self.patrons.GetPatronStanding(
                patrons_pb2.GetPatronStandingRequest(patron_id=patron_id), timeout=PEER_TIMEOUT
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND and must_exist:
                raise NotFound(
                    "PATRON_NOT_FOUND", f"no patron {patron_id}", metadata={"patron_id": patron_id}
                ) from None
            log.warning(
                "patrons unreachable for standing of %s (%s): using defaults", patron_id, exc.code().name
            )
            return None
        except Exception as exc:  # the service token could not be obtained, etc.
            log.warning("patrons unreachable for standing of %s (%s): using defaults", patron_id, exc)
            return None
        return uc.PatronFacts(
            patron_id=patron_id,
            card_barcode=reply.card_barcode,
            enrolled=reply.enrolled,
            blocked=reply.blocked,
            reservation_limit=reply.reservation_limit,
            loan_limit=reply.loan_limit,
            pickup_period_days=reply.pickup_period_days,
        )

    async def patron_by_card(self, card: str) -> str:
        try:
            reply = await self.patrons.LookUpPatronByCard(
                patrons_pb2.LookUpPatronByCardRequest(barcode=card), timeout=PEER_TIMEOUT
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise InvalidArgument(
                    field="patron_card_barcode",
                    description="no patron holds this card",
                    reason="CARD_NOT_FOUND",
                ) from None
            raise Unavailable(
                "PATRONS_UNAVAILABLE",
                "cannot look the card up: the patrons service is unreachable; give patron_id instead",
            ) from None
        return reply.patron.id

    async def deliver_notice(self, payload: dict[str, Any], key: str) -> None:
        """Outbox handler: hand a reservation notice to notify (idempotent by the outbox key)."""
        from bibliodesk.notify.v1 import notify_pb2, notify_pb2_grpc

        reservation_id, kind = payload.get("reservation_id", ""), payload.get("kind", "")
        if reservation_id and not await self.rt.db.read(uc.notice_still_relevant, reservation_id, kind):
            log.info("notice %s dropped: reservation %s is no longer ready", key, reservation_id)
            return
        stub = notify_pb2_grpc.NotifyServiceStub(self.rt.peers.channel("notify"))
        await stub.SendMessage(
            notify_pb2.SendMessageRequest(
                request_id=key,
                patron_id=payload["patron_id"],
                template_key=payload["template_key"],
                variables=payload.get("variables", {}),
                reference=payload.get("reference", ""),
            ),
            timeout=10,
        )

    # -- the sweeper (V2)

    async def sweep_once(self, limit: int = 500) -> tuple[list[pb.Reservation], list[pb.Reservation], int]:
        now = self.rt.clock.now()
        due = await self.rt.db.read(repo.overdue_reservations, now, limit)
        expired: list[pb.Reservation] = []
        passed: list[pb.Reservation] = []
        ctx = self.ctx()
        for reservation_id, _barcode in due:

            def work(
                session: Session, rid: str = reservation_id
            ) -> tuple[pb.Reservation, pb.Reservation | None] | None:
                outcome = uc.expire_one(session, ctx, reservation_id=rid, actor="system:expiry-sweeper")
                if outcome is None:
                    return None
                gone, nxt = outcome
                c = repo.read_circulation(session, gone.item_barcode)
                assert c is not None
                repo.attach_history(session, [gone, *([nxt] if nxt else [])])
                today = self.rt.clock.today()
                return (
                    convert.reservation(gone, title=c.item.title, author=c.item.author),
                    convert.reservation_in(c, nxt, today, self.policy.loan_period_days) if nxt else None,
                )

            try:
                done = await self.rt.db.write(work)
            except Exception:
                log.exception("expiring reservation %s failed; will retry on the next sweep", reservation_id)
                continue
            if done is not None:
                expired.append(done[0])
                if done[1] is not None:
                    passed.append(done[1])
        if expired:
            log.info("expired %d reservations past their pickup deadline", len(expired))
        reminded = await self.send_reminders(limit)
        if expired or reminded:
            self.rt.relay.wake()
        return expired, passed, reminded

    async def send_reminders(self, limit: int = 500) -> int:
        """Queues a reminder for each patron whose automatic pickup deadline is near."""
        if self.policy.reminder_hours_before <= 0:
            return 0
        window = timedelta(hours=self.policy.reminder_hours_before)
        due = await self.rt.db.read(repo.reminders_due, self.rt.clock.now(), window, limit)
        ctx, sent = self.ctx(), 0
        for reservation_id in due:
            try:
                sent += bool(await self.rt.db.write(uc.remind_one, ctx, reservation_id=reservation_id))
            except Exception:
                log.exception(
                    "reminder for reservation %s failed; will retry on the next sweep", reservation_id
                )
        return sent

    async def expiry_sweeper(self) -> None:
        """Background task: expiry, reminders, and pruning of delivered outbox rows."""
        while True:
            await asyncio.sleep(self.policy.sweep_interval_seconds)
            try:
                await self.sweep_once()
                await self.rt.db.write(self.rt.relay.purge_delivered)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("expiry sweep failed")

    # -- read helpers

    def reservation_views(self, session: Session, found: list[Any]) -> list[pb.Reservation]:
        """Reservations as messages: titles and expected dates in three queries per page."""
        circs = repo.read_circulations(session, sorted({r.item_barcode for r in found}))
        today = self.rt.clock.today()
        out = []
        for r in found:
            c = circs.get(r.item_barcode)
            if c is None:
                out.append(convert.reservation(r))
                continue
            current = c.find(r.id)
            expected = c.expected_date_for(current, today, self.policy.loan_period_days) if current else None
            out.append(convert.reservation(r, title=c.item.title, author=c.item.author, expected=expected))
        return out


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

        return pb.GetReservationResponse(reservation=await self.rt.db.read(read))

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

        return await self.rt.db.read(read)

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

        def patron_of(session: Session) -> str | None:
            found = repo.get_reservation(session, request.reservation_id)
            return found.patron_id if found else None

        patron_id = await self.rt.db.read(patron_of)
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

        return await self.rt.db.read(read)

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

        return await self.rt.db.read(read)

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


_SKEW = timedelta(minutes=5)


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

        return await self.rt.db.read(read)

    async def _circulation(self, barcode: str) -> Any:
        c = await self.rt.db.read(repo.read_circulation, barcode)
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

        return await self.rt.db.read(read)

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

        return await self.rt.db.read(read)

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
            return await self.rt.db.read(produce)
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
