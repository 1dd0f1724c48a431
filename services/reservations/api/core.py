"""What the servicers share: input checks, the idempotent write path, peers (patrons, notify),
the expiry/reminder sweeper and the hold-shelf gauges."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bibliodesk.patrons.v1 import patrons_pb2, patrons_pb2_grpc
from bibliodesk.reservations.v1 import reservations_pb2 as pb
from bibliodesk.runtime import auth
from bibliodesk.runtime.errors import (
    InvalidArgument,
    NotFound,
    Unavailable,
    Violations,
)
from bibliodesk.runtime.idempotency import idempotent
from bibliodesk.runtime.service import ServiceRuntime

from .. import convert
from ..app import use_cases as uc
from ..domain import valid_barcode
from ..store import repository as repo

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
T = TypeVar("T")

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

    # -- reads

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """A read transaction on one snapshot: a copy, its loan and its queue are read as they were
        at one instant, even while desks and the sweeper commit (PostgreSQL READ COMMITTED would
        otherwise show each query a newer state)."""

        def run(session: Session, *a: Any) -> T:
            repo.consistent_snapshot(session)
            return fn(session, *a)

        return await self.rt.db.read(run, *args)

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
                patrons_pb2.GetPatronStandingRequest(patron_id=patron_id),
                timeout=self.policy.peer_timeout_seconds,
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
                patrons_pb2.LookUpPatronByCardRequest(barcode=card), timeout=self.policy.peer_timeout_seconds
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
