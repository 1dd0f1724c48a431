"""The inbox of web reservation requests: pure rules, no gRPC, no SQL.

A web request is *not* a reservation yet (R1). An operator advances it (R5: a reservation is created
in the reservations service), cuts it (R6: rejected, with a reason) or sends the patron a one-shot
notice about it (R7). The patron may withdraw it while it is still pending.

Advancing crosses a service boundary, so it is two local transactions around one remote call:
PENDING -> ADVANCING (intent recorded) -> ADVANCED (reservation id recorded). The remote call is
idempotent by a key derived from the request ("inbox-request:<id>"), so a retry or the recovery
task completes a half-done advance without ever making a second reservation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from bibliodesk.runtime.errors import FailedPrecondition, InvalidArgument, NotFound

# --- states, events, transition table ------------------------------------------------------------


class RequestStatus(enum.StrEnum):
    PENDING = "PENDING"
    ADVANCING = "ADVANCING"
    ADVANCED = "ADVANCED"
    CUT = "CUT"
    WITHDRAWN = "WITHDRAWN"


#: Requests still to be handled by the desk ("only active requests", R3). ADVANCING is active: its
#: reservation may not exist yet.
ACTIVE_STATUSES: frozenset[RequestStatus] = frozenset({RequestStatus.PENDING, RequestStatus.ADVANCING})
FINAL_STATUSES: frozenset[RequestStatus] = frozenset(
    {RequestStatus.ADVANCED, RequestStatus.CUT, RequestStatus.WITHDRAWN}
)


class RequestEvent(enum.StrEnum):
    SUBMITTED = "SUBMITTED"
    ADVANCE_STARTED = "ADVANCE_STARTED"
    RESERVATION_CREATED = "RESERVATION_CREATED"
    RESERVATION_REFUSED = "RESERVATION_REFUSED"
    CUT = "CUT"
    WITHDRAWN = "WITHDRAWN"
    NOTICE_SENT = "NOTICE_SENT"
    NOTICE_FAILED = "NOTICE_FAILED"


class AdvanceMode(enum.StrEnum):
    #: "RICHIESTA": reserve; the item is set aside or the patron queues for it.
    RESERVE = "RESERVE"
    #: "richiesta e consegna": reserve and check out at once, for a patron standing at the desk.
    RESERVE_AND_DELIVER = "RESERVE_AND_DELIVER"


class CutReason(enum.StrEnum):
    """Why a request was cut (R6); OTHER needs an explanation in words."""

    ITEM_NOT_LENDABLE = "ITEM_NOT_LENDABLE"
    ITEM_MISSING = "ITEM_MISSING"
    PATRON_NOT_ELIGIBLE = "PATRON_NOT_ELIGIBLE"
    DUPLICATE_REQUEST = "DUPLICATE_REQUEST"
    PATRON_CANCELLED = "PATRON_CANCELLED"
    OTHER = "OTHER"


@dataclass(frozen=True)
class Transition:
    source: RequestStatus
    event: RequestEvent
    target: RequestStatus
    #: Why this transition exists, in the library's words (shown in a request's history).
    reason: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition(
        RequestStatus.PENDING,
        RequestEvent.ADVANCE_STARTED,
        RequestStatus.ADVANCING,
        "an operator advanced the request; its reservation is being created",
    ),
    Transition(
        RequestStatus.ADVANCING,
        RequestEvent.RESERVATION_CREATED,
        RequestStatus.ADVANCED,
        "the reservations service created the reservation: it is now a real reservation",
    ),
    Transition(
        RequestStatus.ADVANCING,
        RequestEvent.RESERVATION_REFUSED,
        RequestStatus.PENDING,
        "the reservations service refused the reservation; the request is back in the inbox",
    ),
    Transition(
        RequestStatus.PENDING, RequestEvent.CUT, RequestStatus.CUT, "an operator rejected the request"
    ),
    Transition(
        RequestStatus.PENDING,
        RequestEvent.WITHDRAWN,
        RequestStatus.WITHDRAWN,
        "the patron (or the desk on their behalf) withdrew the request",
    ),
)

_TABLE: dict[tuple[RequestStatus, RequestEvent], Transition] = {(t.source, t.event): t for t in TRANSITIONS}


def transition(status: RequestStatus, event: RequestEvent) -> Transition:
    """The transition for ``event`` from ``status``, or a FAILED_PRECONDITION naming the state."""
    found = _TABLE.get((status, event))
    if found is None:
        raise FailedPrecondition(
            not_pending_reason(status),
            f"cannot {event.value.lower().replace('_', ' ')}: the request is {status.value.lower()}",
            metadata={"status": status.value},
        )
    return found


def not_pending_reason(status: RequestStatus) -> str:
    """A stable reason per state, so a UI can tell *why* the action is gone."""
    return {
        RequestStatus.ADVANCING: "REQUEST_BEING_ADVANCED",
        RequestStatus.ADVANCED: "REQUEST_ALREADY_ADVANCED",
        RequestStatus.CUT: "REQUEST_ALREADY_CUT",
        RequestStatus.WITHDRAWN: "REQUEST_WITHDRAWN",
    }.get(status, "REQUEST_NOT_PENDING")


# --- the request ---------------------------------------------------------------------------------


@dataclass
class HistoryEntry:
    event: RequestEvent
    source: RequestStatus | None
    target: RequestStatus
    reason: str
    actor: str
    at: datetime
    detail: str = ""


@dataclass
class ReservationRequest:
    id: str
    patron_id: str
    item_barcode: str
    pickup_branch: str
    note: str
    created_at: datetime
    patron_display_name: str = ""
    patron_card_barcode: str = ""
    item_title: str = ""
    item_author: str = ""
    status: RequestStatus = RequestStatus.PENDING
    updated_at: datetime | None = None
    version: int = 1
    advance_mode: AdvanceMode | None = None
    #: The request_id of the advance in flight (or done): only that caller's retry may resume it.
    advance_key: str = ""
    advanced_by: str = ""
    advance_started_at: datetime | None = None
    advanced_at: datetime | None = None
    reservation_id: str = ""
    cut_reason: CutReason | None = None
    cut_explanation: str = ""
    cut_by: str = ""
    cut_at: datetime | None = None
    withdrawn_at: datetime | None = None
    notice_sent_at: datetime | None = None
    notice_sent_by: str = ""
    last_refusal: str = ""
    #: Why the last notice could not be delivered (empty when none failed).
    notice_failure: str = ""
    history: list[HistoryEntry] = field(default_factory=list)

    @classmethod
    def submit(
        cls,
        *,
        id: str,
        patron_id: str,
        item_barcode: str,
        pickup_branch: str,
        note: str,
        actor: str,
        now: datetime,
        patron_display_name: str = "",
        patron_card_barcode: str = "",
        item_title: str = "",
        item_author: str = "",
    ) -> ReservationRequest:
        """A new request in the inbox (R1), with the patron's and the item's names as known now."""
        request = cls(
            id=id,
            patron_id=patron_id,
            item_barcode=item_barcode,
            pickup_branch=pickup_branch,
            note=note,
            created_at=now,
            updated_at=now,
            patron_display_name=patron_display_name,
            patron_card_barcode=patron_card_barcode,
            item_title=item_title,
            item_author=item_author,
        )
        request.history.append(
            HistoryEntry(
                RequestEvent.SUBMITTED,
                None,
                RequestStatus.PENDING,
                "the patron asked to reserve the item",
                actor,
                now,
            )
        )
        return request

    @property
    def etag(self) -> str:
        return str(self.version)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def can_send_notice(self) -> bool:
        """R7: one notice per request; the action disappears once sent (and on closed requests)."""
        return self.notice_sent_at is None and self.status not in {RequestStatus.CUT, RequestStatus.WITHDRAWN}

    def _apply(self, event: RequestEvent, actor: str, now: datetime, detail: str = "") -> Transition:
        t = transition(self.status, event)
        self.history.append(HistoryEntry(event, self.status, t.target, t.reason, actor, now, detail))
        self.status = t.target
        self.updated_at = now
        self.version += 1
        return t

    # R5
    def is_retry_of_advance(self, key: str) -> bool:
        """The same caller asks again for the advance already in flight (or done) under ``key``."""
        return bool(key) and key == self.advance_key and self.status is not RequestStatus.PENDING

    def start_advance(self, mode: AdvanceMode, operator: str, now: datetime, key: str = "") -> bool:
        """Records the intent to advance. Returns False when this is a retry of the advance already
        in flight (or done) under the same key: the caller resumes it instead of starting anew."""
        if self.is_retry_of_advance(key):
            return False
        self._apply(RequestEvent.ADVANCE_STARTED, operator, now, detail=mode.value)
        self.advance_key = key
        self.advance_mode = mode
        self.advanced_by = operator
        self.advance_started_at = now
        self.last_refusal = ""
        return True

    def complete_advance(self, reservation_id: str, now: datetime, actor: str = "system") -> None:
        if not reservation_id:
            raise ValueError("a completed advance needs the reservation id")
        self._apply(RequestEvent.RESERVATION_CREATED, actor, now, detail=reservation_id)
        self.reservation_id = reservation_id
        self.advanced_at = now

    def refuse_advance(self, why: str, now: datetime, actor: str = "system") -> None:
        self._apply(RequestEvent.RESERVATION_REFUSED, actor, now, detail=why)
        self.advance_mode = None
        self.advance_key = ""
        self.advance_started_at = None
        self.last_refusal = why

    # R6
    def cut(
        self,
        reason: CutReason,
        explanation: str,
        operator: str,
        now: datetime,
        *,
        notice_with_cut: bool,
        confirm_without_notice: bool,
    ) -> None:
        explanation = explanation.strip()
        if reason is CutReason.OTHER and not explanation:
            raise InvalidArgument(
                field="explanation", description="is required when the reason is OTHER", reason="REQUIRED"
            )
        if (
            self.status is RequestStatus.PENDING
            and self.notice_sent_at is None
            and not notice_with_cut
            and not confirm_without_notice
        ):
            # Good practice (R6): tell the patron first, then cut. The operator may still insist.
            raise FailedPrecondition(
                "NOTICE_NOT_SENT",
                "the patron was never sent a notice about this request: send one first, send it with "
                "the cut, or confirm cutting without a notice",
            )
        self._apply(RequestEvent.CUT, operator, now, detail=f"{reason.value}: {explanation}".rstrip(": "))
        self.cut_reason = reason
        self.cut_explanation = explanation
        self.cut_by = operator
        self.cut_at = now

    def withdraw(self, actor: str, now: datetime) -> None:
        self._apply(RequestEvent.WITHDRAWN, actor, now)
        self.withdrawn_at = now

    # R7
    def check_can_send_notice(self) -> None:
        if self.notice_sent_at is not None:
            raise FailedPrecondition(
                "NOTICE_ALREADY_SENT",
                "a notice about this request was already sent",
                metadata={"notice_sent_at": self.notice_sent_at.isoformat()},
            )
        if self.status in {RequestStatus.CUT, RequestStatus.WITHDRAWN}:
            raise FailedPrecondition(
                not_pending_reason(self.status),
                f"the request is {self.status.value.lower()}: no notice can be sent",
                metadata={"status": self.status.value},
            )

    def record_notice(self, operator: str, now: datetime) -> None:
        self.check_can_send_notice()
        self.notice_sent_at = now
        self.notice_sent_by = operator
        self.notice_failure = ""
        self.updated_at = now
        self.version += 1
        self.history.append(
            HistoryEntry(
                RequestEvent.NOTICE_SENT,
                self.status,
                self.status,
                "a notice about the request was sent to the patron",
                operator,
                now,
            )
        )

    # --- submission rules (R1) -----------------------------------------------------------------------

    def notice_failed(self, why: str, now: datetime) -> None:
        """notify refused the notice for good (e.g. the e-mail address was removed meanwhile): the
        patron was not told, so the request says so and the send action comes back."""
        if self.notice_sent_at is None:
            return
        self.notice_sent_at = None
        self.notice_sent_by = ""
        self.notice_failure = why
        self.updated_at = now
        self.version += 1
        self.history.append(
            HistoryEntry(
                RequestEvent.NOTICE_FAILED,
                self.status,
                self.status,
                "the notice could not be delivered to the patron",
                "system",
                now,
                why,
            )
        )


@dataclass(frozen=True)
class PatronStanding:
    patron_id: str
    enrolled: bool
    blocked: bool
    status: str
    reservation_limit: int
    home_branch: str


@dataclass(frozen=True)
class ItemSituation:
    item_barcode: str
    exists: bool
    borrower_patron_id: str = ""


@dataclass(frozen=True)
class PatronActivity:
    """What the patron already has going: counted against their category's limit."""

    active_request_items: frozenset[str]
    active_reservation_items: frozenset[str]
    #: Active reservations in the reservations service (WAITING_FOR_RETURN / READY_FOR_PICKUP).
    active_reservations: int

    @property
    def total(self) -> int:
        return len(self.active_request_items) + self.active_reservations


def check_can_request(standing: PatronStanding, item: ItemSituation, activity: PatronActivity) -> None:
    """R1: refuse with a clear reason, in the order a desk operator would explain it."""
    if standing.blocked:
        raise FailedPrecondition(
            "PATRON_BLOCKED", "the patron is blocked: ask at the desk", metadata={"status": standing.status}
        )
    if not standing.enrolled:
        raise FailedPrecondition(
            "PATRON_NOT_ENROLLED",
            "the patron is not enrolled (or the enrollment expired): enrollment is completed at the desk",
            metadata={"status": standing.status},
        )
    if not item.exists:
        raise NotFound(
            "ITEM_NOT_FOUND",
            f"no item with barcode {item.item_barcode!r}",
            metadata={"field": "item_barcode"},
        )
    barcode = {"item_barcode": item.item_barcode}
    if item.borrower_patron_id and item.borrower_patron_id == standing.patron_id:
        raise FailedPrecondition(
            "ITEM_ALREADY_ON_LOAN", "the patron already has this item on loan", metadata=barcode
        )
    if item.item_barcode in activity.active_request_items:
        raise FailedPrecondition(
            "ALREADY_REQUESTED", "the patron already asked for this item", metadata=barcode
        )
    if item.item_barcode in activity.active_reservation_items:
        raise FailedPrecondition(
            "ALREADY_RESERVED", "the patron already has a reservation for this item", metadata=barcode
        )
    if activity.total >= standing.reservation_limit:
        raise FailedPrecondition(
            "RESERVATION_LIMIT_REACHED",
            f"the patron's category allows {standing.reservation_limit} active requests and reservations",
            metadata={"limit": str(standing.reservation_limit), "active": str(activity.total)},
        )
