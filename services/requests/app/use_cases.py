"""Use cases of the inbox that touch only our database: one function each, one transaction each.

They run inside ``rt.db.write`` / ``rt.db.read``. What other services must tell us (the patron's
standing, the item, the patron's reservations) is asked *before* the transaction by the
orchestrator (``app/inbox.py``) and passed in; what must reach other services after the change
goes to the outbox in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy import Table, select, text
from sqlalchemy.orm import Session

from bibliodesk.requests.v1 import requests_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2 as rpb
from bibliodesk.runtime.errors import Aborted
from bibliodesk.runtime.idempotency import fingerprint, idempotent
from bibliodesk.runtime.outbox import enqueue
from bibliodesk.runtime.types import new_id

from .. import convert
from ..domain.model import (
    AdvanceMode,
    CutReason,
    HistoryEntry,
    ItemSituation,
    PatronActivity,
    RequestEvent,
    RequestStatus,
    ReservationRequest,
    check_can_request,
)
from ..store import repository as repo
from .peers import Standing

NOTIFY_TOPIC = "notify.send_message"
M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Tables:
    idempotency: Table
    outbox: Table


def scoped_key(actor: str, request_id: str) -> str:
    """Idempotency keys are per caller: two patrons who pick the same request_id never see each
    other's answers."""
    return f"{actor}/{request_id}" if request_id else ""


def stored_answer(
    session: Session, t: Tables, method: str, request: Message, actor: str, response_type: type[M]
) -> M | None:
    """The first answer to a retried mutation, if any (checked before asking other services)."""
    request_id = scoped_key(actor, str(getattr(request, "request_id", "")))
    if not request_id:
        return None
    row = session.execute(
        select(t.idempotency.c.fingerprint, t.idempotency.c.response).where(
            t.idempotency.c.key == f"{method}:{request_id}"
        )
    ).first()
    if row is None or row.fingerprint != fingerprint(request):
        return None  # unknown, or reused for another request: the write path says which
    return response_type.FromString(row.response)


def once(
    session: Session,
    t: Tables,
    method: str,
    request: Message,
    produce: Callable[[], M],
    response_type: type[M],
    *,
    actor: str,
    now: datetime,
) -> M:
    """Runs ``produce`` once per (caller, request_id): a retry gets the stored first answer."""
    key = scoped_key(actor, str(getattr(request, "request_id", "")))
    return idempotent(
        session, t.idempotency, method, request, produce, response_type, now=now, request_id=key
    )


def check_etag(request: ReservationRequest, etag: str) -> None:
    if etag and etag != request.etag:
        raise Aborted(
            "ETAG_MISMATCH",
            "the request changed since you read it; reload it",
            metadata={"current_etag": request.etag},
        )


# --- R1 submit -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitFacts:
    """What the patrons and reservations services said, asked just before the transaction."""

    standing: Standing
    item: rpb.ItemAvailability
    reservations: list[rpb.Reservation]


def submit(
    session: Session,
    t: Tables,
    request: pb.SubmitReservationRequestRequest,
    *,
    item_barcode: str,
    patron_id: str,
    pickup_branch: str,
    facts: SubmitFacts,
    actor: str,
    now: datetime,
) -> pb.SubmitReservationRequestResponse:
    def produce() -> pb.SubmitReservationRequestResponse:
        if session.get_bind().dialect.name == "postgresql":
            # One patron's submissions one at a time, so two at once cannot both pass the limit.
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "inbox:" + patron_id})
        activity = PatronActivity(
            active_request_items=repo.active_items_of(session, patron_id),
            active_reservation_items=frozenset(r.item_barcode for r in facts.reservations),
            active_reservations=len(facts.reservations),
        )
        item = facts.item
        check_can_request(
            facts.standing.facts,
            ItemSituation(item_barcode, item.exists, item.borrower_patron_id),
            activity,
        )
        created = ReservationRequest.submit(
            id=new_id(),
            patron_id=patron_id,
            item_barcode=item_barcode,
            pickup_branch=pickup_branch,
            note=request.note.strip(),
            actor=actor,
            now=now,
            patron_display_name=facts.standing.display_name,
            patron_card_barcode=facts.standing.card_barcode,
            item_title=item.title,
            item_author=item.author,
        )
        repo.add(session, created)
        return pb.SubmitReservationRequestResponse(reservation_request=convert.reservation_request(created))

    return once(
        session,
        t,
        "SubmitReservationRequest",
        request,
        produce,
        pb.SubmitReservationRequestResponse,
        actor=actor,
        now=now,
    )


# --- reads ---------------------------------------------------------------------------------------


def get_with_history(session: Session, request_id: str) -> tuple[ReservationRequest, list[HistoryEntry]]:
    found = repo.get(session, request_id)
    return found, repo.history(session, request_id)


# --- withdraw --------------------------------------------------------------------------------------


def withdraw(
    session: Session,
    t: Tables,
    request: pb.WithdrawReservationRequestRequest,
    *,
    owner_check: Callable[[ReservationRequest], None],
    actor: str,
    now: datetime,
) -> pb.WithdrawReservationRequestResponse:
    def produce() -> pb.WithdrawReservationRequestResponse:
        found = repo.get(session, request.reservation_request_id, lock=True)
        owner_check(found)
        check_etag(found, request.etag)
        read = found.version
        found.withdraw(actor, now)
        repo.save(session, found, read_version=read)
        return pb.WithdrawReservationRequestResponse(reservation_request=convert.reservation_request(found))

    return once(
        session,
        t,
        "WithdrawReservationRequest",
        request,
        produce,
        pb.WithdrawReservationRequestResponse,
        actor=actor,
        now=now,
    )


# --- R5 advance (two transactions around the reservations call) -------------------------------------


@dataclass(frozen=True)
class AdvanceStep:
    """What the orchestrator must do after the first transaction."""

    request: ReservationRequest
    #: A stored first answer: return it, call nobody.
    replay: pb.AdvanceReservationRequestResponse | None = None


def begin_advance(
    session: Session,
    t: Tables,
    request: pb.AdvanceReservationRequestRequest,
    *,
    mode: AdvanceMode,
    actor: str,
    now: datetime,
) -> AdvanceStep:
    replay = stored_answer(
        session, t, "AdvanceReservationRequest", request, actor, pb.AdvanceReservationRequestResponse
    )
    if replay is not None:
        return AdvanceStep(repo.get(session, request.reservation_request_id), replay)
    found = repo.get(session, request.reservation_request_id, lock=True)
    key = scoped_key(actor, request.request_id)
    if found.is_retry_of_advance(key):
        return AdvanceStep(found)  # our own retry: resume (or just answer) the advance in flight
    check_etag(found, request.etag)
    read = found.version
    found.start_advance(mode, actor, now, key=key)
    repo.save(session, found, read_version=read)
    return AdvanceStep(found)


def complete_advance(
    session: Session,
    t: Tables,
    request: pb.AdvanceReservationRequestRequest | None,
    *,
    request_id: str,
    reservation: rpb.Reservation,
    actor: str,
    now: datetime,
) -> pb.AdvanceReservationRequestResponse:
    """ADVANCING → ADVANCED with the reservation id (or, if a concurrent completion won, the answer
    as it stands). ``request`` is None for the recovery task (no caller to answer)."""

    def produce() -> pb.AdvanceReservationRequestResponse:
        found = repo.get(session, request_id, lock=True)
        if found.status is RequestStatus.ADVANCING:
            read = found.version
            found.complete_advance(reservation.id, now, actor=actor)
            repo.save(session, found, read_version=read)
        return pb.AdvanceReservationRequestResponse(
            reservation_request=convert.reservation_request(found), reservation=reservation
        )

    if request is None:
        return produce()
    return once(
        session,
        t,
        "AdvanceReservationRequest",
        request,
        produce,
        pb.AdvanceReservationRequestResponse,
        actor=actor,
        now=now,
    )


def refuse_advance(session: Session, request_id: str, *, why: str, now: datetime) -> ReservationRequest:
    found = repo.get(session, request_id, lock=True)
    if found.status is RequestStatus.ADVANCING:
        read = found.version
        found.refuse_advance(why, now)
        repo.save(session, found, read_version=read)
    return found


def stale_advances(session: Session, started_before: datetime, limit: int = 50) -> list[ReservationRequest]:
    return [repo.get(session, rid) for rid in repo.stale_advances(session, started_before, limit)]


# --- R6 cut ----------------------------------------------------------------------------------------


def notice_payload(
    found: ReservationRequest,
    *,
    template_key: str,
    subject: str,
    body: str,
    variables: dict[str, str],
    request_date: str,
) -> dict[str, Any]:
    return {
        "patron_id": found.patron_id,
        "template_key": template_key,
        "subject": subject,
        "body": body,
        "variables": {
            "title": found.item_title,
            "author": found.item_author,
            "item_barcode": found.item_barcode,
            "request_date": request_date,
            **variables,
        },
        "reference": convert.notice_reference(found.id),
    }


def cut(
    session: Session,
    t: Tables,
    request: pb.CutReservationRequestRequest,
    *,
    reason: CutReason,
    reason_in_words: str,
    request_date: Callable[[datetime], str],
    actor: str,
    now: datetime,
) -> pb.CutReservationRequestResponse:
    def produce() -> pb.CutReservationRequestResponse:
        found = repo.get(session, request.reservation_request_id, lock=True)
        check_etag(found, request.etag)
        read = found.version
        if request.send_notice and found.notice_sent_at is None:
            found.record_notice(actor, now)  # the cut notice is the request's notice (R7: only one)
        found.cut(
            reason,
            request.explanation,
            actor,
            now,
            notice_with_cut=request.send_notice,
            confirm_without_notice=request.confirm_without_notice,
        )
        if request.send_notice:
            enqueue(
                session,
                t.outbox,
                NOTIFY_TOPIC,
                f"inbox-request-cut:{found.id}",
                notice_payload(
                    found,
                    template_key="request_cut",
                    subject="",
                    body=request.notice_message.strip(),
                    variables={"reason": reason_in_words},
                    request_date=request_date(found.created_at),
                ),
                now=now,
            )
        repo.save(session, found, read_version=read)
        return pb.CutReservationRequestResponse(reservation_request=convert.reservation_request(found))

    return once(
        session,
        t,
        "CutReservationRequest",
        request,
        produce,
        pb.CutReservationRequestResponse,
        actor=actor,
        now=now,
    )


# --- R7 notice -------------------------------------------------------------------------------------


def send_notice(
    session: Session,
    t: Tables,
    request: pb.SendRequestNoticeRequest,
    *,
    template_key: str,
    request_date: Callable[[datetime], str],
    actor: str,
    now: datetime,
) -> pb.SendRequestNoticeResponse:
    def produce() -> pb.SendRequestNoticeResponse:
        found = repo.get(session, request.reservation_request_id, lock=True)
        read = found.version
        found.record_notice(actor, now)
        # One e-mail per notice: "inbox-request-notice:<id>", or ":<n>" after n-1 failed ones.
        failed = repo.count_events(session, found.id, RequestEvent.NOTICE_FAILED)
        enqueue(
            session,
            t.outbox,
            NOTIFY_TOPIC,
            f"inbox-request-notice:{found.id}" + (f":{failed + 1}" if failed else ""),
            notice_payload(
                found,
                template_key=template_key,
                subject=request.subject.strip() if not template_key else "",
                body=request.body.strip(),
                variables={"request_id": found.id},
                request_date=request_date(found.created_at),
            ),
            now=now,
        )
        repo.save(session, found, read_version=read)
        return pb.SendRequestNoticeResponse(reservation_request=convert.reservation_request(found))

    return once(
        session, t, "SendRequestNotice", request, produce, pb.SendRequestNoticeResponse, actor=actor, now=now
    )


def notice_failed(session: Session, reference: str, *, why: str, now: datetime) -> None:
    """notify refused a notice for good: the request must not claim the patron was told."""
    request_id = reference.removeprefix("inbox-request:")
    found = repo.get(session, request_id, lock=True)
    read = found.version
    found.notice_failed(why, now)
    if found.version != read:
        repo.save(session, found, read_version=read)
