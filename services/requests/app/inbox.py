"""The inbox's application service: who may do what, what to ask other services, which transaction.

Each method validates its input (INVALID_ARGUMENT naming the field), checks the caller, asks peers
what it needs *outside* any transaction, then runs one use case of ``use_cases`` in one transaction.
Advancing is the one flow with two transactions around a remote call (see ``advance``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError

from bibliodesk.notify.v1 import notify_pb2 as npb
from bibliodesk.notify.v1 import notify_pb2_grpc as npb_grpc
from bibliodesk.requests.v1 import requests_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2 as rpb
from bibliodesk.runtime import auth
from bibliodesk.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, Violations
from bibliodesk.runtime.outbox import PermanentFailure, is_permanent
from bibliodesk.runtime.service import ServiceRuntime

from .. import convert
from ..domain.model import (
    ACTIVE_STATUSES,
    AdvanceMode,
    CutReason,
    RequestEvent,
    ReservationRequest,
)
from ..store import repository as repo
from . import use_cases as uc
from .peers import PeerClients, peer_reason

log = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M", bound=Message)

MAX_PAGE = 200
DEFAULT_PAGE = 50
#: Codes with which the reservations service refuses a reservation for good (the request goes back
#: to PENDING with the reason); anything else leaves the advance in flight, to be retried.
_REFUSALS = {
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.PERMISSION_DENIED,
}
_CLOSING = {RequestEvent.RESERVATION_CREATED, RequestEvent.CUT, RequestEvent.WITHDRAWN}

CUT_REASON_WORDS = {
    "it": {
        CutReason.ITEM_NOT_LENDABLE: "il documento non è disponibile per il prestito",
        CutReason.ITEM_MISSING: "il documento non è stato trovato",
        CutReason.PATRON_NOT_ELIGIBLE: "la tua tessera non consente di prenotare questo documento",
        CutReason.DUPLICATE_REQUEST: "hai già richiesto lo stesso documento",
        CutReason.PATRON_CANCELLED: "su tua indicazione",
        CutReason.OTHER: "",
    },
    "en": {
        CutReason.ITEM_NOT_LENDABLE: "the item cannot be lent",
        CutReason.ITEM_MISSING: "the item cannot be found",
        CutReason.PATRON_NOT_ELIGIBLE: "your card does not allow reserving this item",
        CutReason.DUPLICATE_REQUEST: "you already asked for the same item",
        CutReason.PATRON_CANCELLED: "as you asked",
        CutReason.OTHER: "",
    },
}


def actor_of(principal: auth.Principal) -> str:
    return f"{principal.kind}:{principal.subject}"


class Inbox:
    def __init__(self, rt: ServiceRuntime) -> None:
        self.rt = rt
        self.db = rt.db
        self.clock = rt.clock
        self.peers = PeerClients(rt.peers, float(rt.settings.get("REQUESTS_PEER_TIMEOUT_SECONDS", "10")))
        self.tables = uc.Tables(idempotency=rt.idempotency, outbox=rt.outbox)
        self.branches = frozenset(
            b.strip() for b in rt.settings.get("REQUESTS_BRANCHES").split(",") if b.strip()
        )
        self.advance_grace = timedelta(seconds=float(rt.settings.get("REQUESTS_ADVANCE_GRACE_SECONDS", "30")))
        self.recovery_interval = float(rt.settings.get("REQUESTS_RECOVERY_INTERVAL_SECONDS", "15"))
        self.watch_poll = float(rt.settings.get("REQUESTS_WATCH_POLL_SECONDS", "1"))
        self._watchers: set[asyncio.Event] = set()

    # --- plumbing --------------------------------------------------------------------------------

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One write transaction. On PostgreSQL two concurrent first calls with one request_id (or
        two submissions racing for one active (patron, item)) meet a unique key: the loser runs
        once more and then sees the winner's result."""
        try:
            result = await self.db.write(fn, *args, **kwargs)
        except IntegrityError:
            result = await self.db.write(fn, *args, **kwargs)
        self._changed()
        return result

    @property
    def watchers(self) -> int:
        """Live inbox streams open now."""
        return len(self._watchers)

    async def _replay(self, method: str, request: Message, actor: str, response_type: type[M]) -> M | None:
        """A retried mutation's first answer, looked up before asking any other service."""
        return await self.db.read(uc.stored_answer, self.tables, method, request, actor, response_type)

    def _changed(self) -> None:
        for event in self._watchers:
            event.set()

    def _request_date(self, created_at: datetime) -> str:
        return created_at.astimezone(self.clock.tz).date().isoformat()

    async def _availability(
        self, barcodes: list[str], principal: auth.Principal
    ) -> dict[str, rpb.ItemAvailability] | None:
        """None when the reservations service cannot say (the rows are shown without it)."""
        try:
            found = await self.peers.availability(barcodes)
        except Unavailable:
            return None
        if principal.is_patron:  # whose copy it is, is not a patron's business
            for a in found.values():
                if a.borrower_patron_id != principal.subject:
                    a.borrower_patron_id = ""
        return found

    # --- R1 submit, read, withdraw -------------------------------------------------------------------

    async def submit(
        self, request: pb.SubmitReservationRequestRequest
    ) -> pb.SubmitReservationRequestResponse:
        principal = auth.current_principal()
        v = Violations()
        _request_id(v, request.request_id)
        if v.required("item_barcode", request.item_barcode):
            v.max_length("item_barcode", request.item_barcode, 64)
        v.max_length("pickup_branch", request.pickup_branch, 64)
        v.max_length("note", request.note, 500)
        if self.branches and request.pickup_branch.strip():
            v.check(
                request.pickup_branch.strip() in self.branches,
                "pickup_branch",
                f"must be one of {', '.join(sorted(self.branches))}",
                "UNKNOWN_BRANCH",
            )
        if principal.is_patron:
            auth.require_patron_or_staff(request.patron_id or principal.subject)
            patron_id = principal.subject
        else:
            auth.require_kind(auth.STAFF, auth.SERVICE)
            v.required("patron_id", request.patron_id)
            patron_id = request.patron_id
        v.raise_if_any()
        actor = actor_of(principal)
        replay = await self._replay(
            "SubmitReservationRequest", request, actor, pb.SubmitReservationRequestResponse
        )
        if replay is not None:
            return replay
        barcode = request.item_barcode.strip()
        standing, items, reservations = await asyncio.gather(
            self.peers.standing(patron_id),
            self.peers.availability([barcode]),
            self.peers.active_reservations(patron_id),
        )
        item = items.get(barcode) or rpb.ItemAvailability(item_barcode=barcode, exists=False)
        pickup = request.pickup_branch.strip() or standing.facts.home_branch or item.branch
        if not pickup:
            raise InvalidArgument(
                field="pickup_branch",
                description="is required (the patron has no home branch)",
                reason="REQUIRED",
            )
        facts = uc.SubmitFacts(standing=standing, item=item, reservations=list(reservations))
        return await self._write(
            uc.submit,
            self.tables,
            request,
            item_barcode=barcode,
            patron_id=patron_id,
            pickup_branch=pickup,
            facts=facts,
            actor=actor,
            now=self.clock.now(),
        )

    async def get(self, request: pb.GetReservationRequestRequest) -> pb.GetReservationRequestResponse:
        principal = auth.current_principal()
        if not request.reservation_request_id:
            raise InvalidArgument(
                field="reservation_request_id", description="is required", reason="REQUIRED"
            )
        found, history = await self.db.read(uc.get_with_history, request.reservation_request_id)
        _check_owner(found, principal)
        availability = await self._availability([found.item_barcode], principal)
        message = convert.reservation_request(
            found, availability=(availability or {}).get(found.item_barcode), history=history
        )
        return pb.GetReservationRequestResponse(
            reservation_request=convert.for_patron(message) if principal.is_patron else message
        )

    async def withdraw(
        self, request: pb.WithdrawReservationRequestRequest
    ) -> pb.WithdrawReservationRequestResponse:
        principal = auth.current_principal()
        v = Violations()
        _request_id(v, request.request_id)
        v.required("reservation_request_id", request.reservation_request_id)
        v.raise_if_any()
        return await self._write(
            uc.withdraw,
            self.tables,
            request,
            owner_check=lambda found: _check_owner(found, principal),
            actor=actor_of(principal),
            now=self.clock.now(),
        )

    # --- R2/R3 the inbox ------------------------------------------------------------------------------

    async def list(self, request: pb.ListReservationRequestsRequest) -> pb.ListReservationRequestsResponse:
        principal = auth.current_principal()
        v = Violations()
        v.check(0 <= request.page_size <= MAX_PAGE, "page_size", f"must be between 0 and {MAX_PAGE}")
        v.check(not (request.made_today and request.made_on), "made_on", "cannot be combined with made_today")
        day: date | None = self.clock.today() if request.made_today else None
        if request.made_on:
            try:
                day = date.fromisoformat(request.made_on)
            except ValueError:
                v.add("made_on", "must be a date YYYY-MM-DD", "INVALID_DATE")
        statuses = {convert.STATUS_FROM_PB.get(s) for s in request.statuses}
        v.check(None not in statuses, "statuses", "contains an unknown status")
        patron_id = request.patron_id
        if principal.is_patron:
            auth.require_patron_or_staff(patron_id or principal.subject)
            patron_id = principal.subject
        if request.active_only and statuses:
            statuses &= set(ACTIVE_STATUSES)
            v.check(bool(statuses), "statuses", "lists no active status, but active_only is set", "CONFLICT")
        elif request.active_only:
            statuses = set(ACTIVE_STATUSES)
        f = repo.InboxFilter(
            created_from=self.clock.day_bounds(day)[0] if day else None,
            created_to=self.clock.day_bounds(day)[1] if day else None,
            statuses=frozenset(s for s in statuses if s is not None),
            pickup_branch=request.pickup_branch.strip(),
            patron_id=patron_id,
            item_barcode=request.item_barcode.strip(),
            newest_first=request.order != pb.LIST_ORDER_OLDEST_FIRST,
        )
        after = _decode_token(request.page_token, f, v)
        v.raise_if_any()
        size = request.page_size or DEFAULT_PAGE
        rows = await self.db.read(repo.list_page, f, after, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        availability = await self._availability([r.item_barcode for r in rows], principal)
        messages = [
            convert.reservation_request(r, availability=(availability or {}).get(r.item_barcode))
            for r in rows
        ]
        return pb.ListReservationRequestsResponse(
            reservation_requests=[convert.for_patron(m) for m in messages]
            if principal.is_patron
            else messages,
            next_page_token=_encode_token(rows[-1], f) if more else "",
            availability_unknown=availability is None and bool(rows),
        )

    async def watch(self, request: pb.WatchInboxRequest) -> AsyncIterator[pb.WatchInboxResponse]:
        principal = auth.require_staff()
        if request.after_event_id < 0:
            raise InvalidArgument(field="after_event_id", description="must not be negative")
        feed = InboxFeed(request.after_event_id or await self.db.read(repo.last_event_id))
        wake = asyncio.Event()
        self._watchers.add(wake)  # from here on, every later event reaches this stream
        try:
            while True:
                wake.clear()  # before reading: a commit after the read wakes the wait below at once
                events = await self.db.read(repo.events_after, feed.cursor, 200)
                fresh = feed.accept(events)
                if fresh:
                    rows = await self.db.read(repo.get_many, [e.request_id for e in fresh])
                    availability = (
                        await self._availability(list({r.item_barcode for r in rows.values()}), principal)
                        or {}
                    )
                    for event in fresh:
                        row = rows[event.request_id]
                        if self._watched(request, row, event):
                            yield pb.WatchInboxResponse(
                                event_id=event.id,
                                kind=convert.EVENT_TO_PB[event.kind],
                                at=convert.ts(event.at),
                                reservation_request=convert.reservation_request(
                                    row, availability=availability.get(row.item_barcode)
                                ),
                            )
                if len(events) < 200:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout=self.watch_poll)
        finally:
            self._watchers.discard(wake)

    def _watched(self, request: pb.WatchInboxRequest, row: ReservationRequest, event: repo.FeedEvent) -> bool:
        if request.pickup_branch and row.pickup_branch != request.pickup_branch:
            return False
        if request.made_today:
            start, end = self.clock.day_bounds(self.clock.today())
            if not start <= row.created_at < end:
                return False
        return not request.active_only or event.to_status in ACTIVE_STATUSES or event.kind in _CLOSING

    # --- R5 advance -----------------------------------------------------------------------------------

    async def advance(
        self, request: pb.AdvanceReservationRequestRequest
    ) -> pb.AdvanceReservationRequestResponse:
        """PENDING → ADVANCING (transaction 1), CreateReservation keyed "inbox-request:<id>", then
        ADVANCING → ADVANCED (transaction 2). A crash or an unreachable reservations service leaves the
        request ADVANCING: the same caller's retry, or the recovery task, completes it, and the key
        makes the reservations service answer with the same reservation, never a second one."""
        principal = auth.require_staff()
        v = Violations()
        _request_id(v, request.request_id)
        v.required("reservation_request_id", request.reservation_request_id)
        mode = convert.MODE_FROM_PB.get(request.mode)
        v.check(
            mode is not None,
            "mode",
            "must be ADVANCE_MODE_RESERVE or ADVANCE_MODE_RESERVE_AND_DELIVER",
            "REQUIRED",
        )
        v.raise_if_any()
        assert mode is not None
        actor = actor_of(principal)
        step = await self._write(
            uc.begin_advance, self.tables, request, mode=mode, actor=actor, now=self.clock.now()
        )
        if step.replay is not None:
            return step.replay
        return await self._finish_advance(step.request, request, actor)

    async def _finish_advance(
        self, found: ReservationRequest, request: pb.AdvanceReservationRequestRequest | None, actor: str
    ) -> pb.AdvanceReservationRequestResponse:
        try:
            reply = await self.peers.reservations().CreateReservation(
                rpb.CreateReservationRequest(
                    request_id=f"inbox-request:{found.id}",
                    patron_id=found.patron_id,
                    item_barcode=found.item_barcode,
                    pickup_branch=found.pickup_branch,
                    origin=rpb.RESERVATION_ORIGIN_WEB,
                    deliver_now=found.advance_mode is AdvanceMode.RESERVE_AND_DELIVER,
                    note=found.note,
                ),
                timeout=self.peers.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in _REFUSALS:
                log.warning(
                    "advance of %s not completed yet: reservations answered %s", found.id, exc.code().name
                )
                raise Unavailable(
                    "RESERVATIONS_UNAVAILABLE",
                    "the reservations service cannot be reached; the advance is recorded and completes when "
                    "you retry with the same request_id (or by itself shortly)",
                    metadata={"reservation_request_id": found.id, "peer_code": exc.code().name},
                ) from exc
            why = peer_reason(exc) or exc.code().name
            await self._write(uc.refuse_advance, found.id, why=why, now=self.clock.now())
            raise FailedPrecondition(
                "RESERVATION_REFUSED",
                f"the reservation was refused: {exc.details()}",
                metadata={"reservation_reason": why, "reservation_request_id": found.id},
            ) from exc
        return await self._write(
            uc.complete_advance,
            self.tables,
            request,
            request_id=found.id,
            reservation=reply.reservation,
            actor=actor if request else "system",
            now=self.clock.now(),
        )

    async def recover_advances(self) -> int:
        """Completes advances left half-done (a crash, the reservations service down). One pass;
        returns how many were completed."""
        stale = await self.db.read(uc.stale_advances, self.clock.now() - self.advance_grace)
        done = 0
        for found in stale:
            try:
                await self._finish_advance(found, None, "system")
                done += 1
            except (Unavailable, FailedPrecondition) as exc:
                log.info("advance of %s not recovered: %s", found.id, exc)
        return done

    async def recovery_loop(self) -> None:
        while True:
            await asyncio.sleep(self.recovery_interval)
            try:
                await self.recover_advances()
            except Exception:
                log.exception("advance recovery pass failed")

    # --- R6 cut, R7 notice ------------------------------------------------------------------------------

    async def cut(self, request: pb.CutReservationRequestRequest) -> pb.CutReservationRequestResponse:
        principal = auth.require_staff()
        v = Violations()
        _request_id(v, request.request_id)
        v.required("reservation_request_id", request.reservation_request_id)
        reason = convert.CUT_FROM_PB.get(request.reason)
        v.check(reason is not None, "reason", "is required: say why the request is cut", "REQUIRED")
        v.max_length("explanation", request.explanation, 1000)
        v.max_length("notice_message", request.notice_message, 5000)
        v.check(
            request.send_notice or not request.notice_message.strip(),
            "notice_message",
            "is only sent with send_notice",
        )
        v.raise_if_any()
        assert reason is not None
        actor = actor_of(principal)
        replay = await self._replay("CutReservationRequest", request, actor, pb.CutReservationRequestResponse)
        if replay is not None:
            return replay
        words = request.explanation.strip()
        if request.send_notice:
            found = await self.db.read(repo.get, request.reservation_request_id)
            contact = await self._contact_with_email(found)
            words = words or CUT_REASON_WORDS.get(contact.language, CUT_REASON_WORDS["it"])[reason]
        response = await self._write(
            uc.cut,
            self.tables,
            request,
            reason=reason,
            reason_in_words=words,
            request_date=self._request_date,
            actor=actor,
            now=self.clock.now(),
        )
        self.rt.relay.wake()
        return response

    async def send_notice(self, request: pb.SendRequestNoticeRequest) -> pb.SendRequestNoticeResponse:
        principal = auth.require_staff()
        v = Violations()
        _request_id(v, request.request_id)
        v.required("reservation_request_id", request.reservation_request_id)
        v.max_length("template_key", request.template_key, 100)
        v.max_length("subject", request.subject, 200)
        v.max_length("body", request.body, 5000)
        if request.template_key:
            v.check(not request.subject.strip(), "subject", "is taken from the template; leave it empty")
        elif request.subject.strip():
            v.required("body", request.body)  # free composition needs a text
        v.raise_if_any()
        template_key = request.template_key or ("" if request.subject.strip() else "request_notice")
        actor = actor_of(principal)
        replay = await self._replay("SendRequestNotice", request, actor, pb.SendRequestNoticeResponse)
        if replay is not None:
            return replay
        found = await self.db.read(repo.get, request.reservation_request_id)
        found.check_can_send_notice()  # refuse early, before asking patrons (checked again when writing)
        await self._contact_with_email(found)
        response = await self._write(
            uc.send_notice,
            self.tables,
            request,
            template_key=template_key,
            request_date=self._request_date,
            actor=actor,
            now=self.clock.now(),
        )
        self.rt.relay.wake()
        return response

    async def _contact_with_email(self, found: ReservationRequest) -> Any:
        contact = await self.peers.contact(found.patron_id)
        if not contact.email:
            raise FailedPrecondition(
                "NO_EMAIL_ADDRESS",
                "the patron has no e-mail address: tell them by phone or at the desk",
                metadata={"patron_id": found.patron_id},
            )
        return contact

    async def deliver_notice(self, payload: dict[str, Any], key: str) -> None:
        """Outbox handler: hands a notice to notify, keyed by the outbox row (at most one e-mail).
        A refusal for good (e.g. the patron's e-mail was removed meanwhile) is written on the
        request, so the desk sees the patron was not told and may try again."""
        stub: npb_grpc.NotifyServiceAsyncStub = npb_grpc.NotifyServiceStub(  # type: ignore[assignment]
            self.rt.peers.channel("notify")
        )
        try:
            await stub.SendMessage(
                npb.SendMessageRequest(request_id=key, **payload), timeout=self.peers.timeout
            )
        except grpc.aio.AioRpcError as exc:
            if not is_permanent(exc):
                raise
            why = peer_reason(exc) or exc.code().name
            await self._write(uc.notice_failed, payload["reference"], why=why, now=self.clock.now())
            raise PermanentFailure(f"notify refused the notice {key}: {why}") from exc


# --- helpers ---------------------------------------------------------------------------------------


def _check_owner(found: ReservationRequest, principal: auth.Principal) -> None:
    """A patron sees only their own requests; another patron's is simply not there."""
    if principal.is_patron and found.patron_id != principal.subject:
        raise NotFound(
            "REQUEST_NOT_FOUND",
            f"no reservation request {found.id!r}",
            metadata={"field": "reservation_request_id"},
        )


def _filter_digest(f: repo.InboxFilter) -> str:
    raw = repr(
        (
            f.created_from,
            f.created_to,
            sorted(f.statuses),
            f.pickup_branch,
            f.patron_id,
            f.item_barcode,
            f.newest_first,
        )
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _encode_token(last: ReservationRequest, f: repo.InboxFilter) -> str:
    body = json.dumps({"at": last.created_at.isoformat(), "id": last.id, "f": _filter_digest(f)})
    return base64.urlsafe_b64encode(body.encode()).decode()


def _decode_token(token: str, f: repo.InboxFilter, v: Violations) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token.encode()))
        at, last_id, digest = datetime.fromisoformat(body["at"]), str(body["id"]), body["f"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        v.add("page_token", "is not a token this service issued", "INVALID_PAGE_TOKEN")
        return None
    if digest != _filter_digest(f):
        v.add("page_token", "was issued for other filters", "INVALID_PAGE_TOKEN")
        return None
    return at, last_id


class InboxFeed:
    """Reads the event log in id order without losing a late commit.

    On PostgreSQL ids are taken at insert and transactions commit in any order, so a watcher may see
    id 11 before id 10 exists. The cursor stays below such a gap (events past it are sent once and
    remembered) until the gap fills or has lasted ``gap_seconds`` (a rolled-back insert leaves a
    hole for ever). On SQLite writes are serialised and gaps do not happen."""

    def __init__(self, cursor: int, gap_seconds: float = 3.0) -> None:
        self.cursor = cursor
        self.gap_seconds = gap_seconds
        self._sent: set[int] = set()
        self._gap_seen_at: float | None = None

    def accept(self, events: Any) -> list[repo.FeedEvent]:
        fresh: list[repo.FeedEvent] = []
        expected = self.cursor + 1
        blocked = False
        for e in events:
            if not blocked and e.id != expected:
                now = time.monotonic()
                self._gap_seen_at = self._gap_seen_at or now
                if now - self._gap_seen_at < self.gap_seconds:
                    blocked = True
            if not blocked:
                self.cursor = e.id
                expected = e.id + 1
                self._gap_seen_at = None
            if e.id not in self._sent:
                fresh.append(e)
                if blocked:
                    self._sent.add(e.id)
        self._sent = {i for i in self._sent if i > self.cursor}
        return fresh


def _request_id(v: Violations, value: str) -> None:
    """Mutations need an idempotency key; 100 characters leave room for the caller scope."""
    if v.required("request_id", value):
        v.max_length("request_id", value, 100)
