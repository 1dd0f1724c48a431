"""Items, loans, reservations and their queue: pure rules, no gRPC, no SQL.

The consistency boundary is one item copy with everything that competes for it: its open loan and
its active reservations (the one READY_FOR_PICKUP, if any, and the queue WAITING_FOR_RETURN). The
store loads that whole :class:`Circulation` under a row lock on the item, a use case calls one
method on it, and the store saves it in the same transaction. So two desks, a sweeper and twenty
patrons can act on one copy at once and the queue never gets a gap or a duplicate.

Every state change goes through a transition table and records a stable reason; the aggregate
collects the events (a notice to send) that the application writes to the outbox.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from bibliodesk.runtime.errors import FailedPrecondition

# --- states and transition tables ----------------------------------------------------------------


class ReservationStatus(enum.StrEnum):
    WAITING_FOR_RETURN = "WAITING_FOR_RETURN"
    READY_FOR_PICKUP = "READY_FOR_PICKUP"
    FULFILLED = "FULFILLED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


ACTIVE_STATUSES: frozenset[ReservationStatus] = frozenset(
    {ReservationStatus.WAITING_FOR_RETURN, ReservationStatus.READY_FOR_PICKUP}
)


class Origin(enum.StrEnum):
    WEB = "WEB"
    DESK = "DESK"
    SELF_CHECK = "SELF_CHECK"


class ItemState(enum.StrEnum):
    ON_SHELF = "ON_SHELF"
    ON_LOAN = "ON_LOAN"
    SET_ASIDE = "SET_ASIDE"


R = ReservationStatus

#: (from, to) -> {reason: what it means}. ``None`` as source is the creation step.
RESERVATION_TRANSITIONS: dict[tuple[ReservationStatus | None, ReservationStatus], dict[str, str]] = {
    (None, R.READY_FOR_PICKUP): {"ITEM_ON_SHELF": "the item was on the shelf: it is set aside (V1)"},
    (None, R.WAITING_FOR_RETURN): {
        "ITEM_ON_LOAN": "the item is on loan: the patron queues for its return (V4)",
        "ITEM_SET_ASIDE_FOR_ANOTHER": "the item is set aside for another patron: the patron queues",
    },
    (None, R.FULFILLED): {"DELIVERED_NOW": "reserve and deliver: checked out to the patron at once"},
    (R.WAITING_FOR_RETURN, R.READY_FOR_PICKUP): {
        "ITEM_RETURNED": "the borrower returned the item: it is set aside for the first in the queue",
        "PASSED_ON": "the reservation ahead expired or was cancelled: the item passed on",
    },
    (R.WAITING_FOR_RETURN, R.CANCELLED): {
        "CANCELLED_BY_PATRON": "the patron cancelled the reservation",
        "CANCELLED_BY_STAFF": "an operator cancelled the reservation",
    },
    (R.READY_FOR_PICKUP, R.FULFILLED): {"CHECKED_OUT": "the item was checked out to the patron (V6)"},
    (R.READY_FOR_PICKUP, R.EXPIRED): {
        "PICKUP_DEADLINE_PASSED": "the patron did not collect the item by the pickup deadline (V2)"
    },
    (R.READY_FOR_PICKUP, R.CANCELLED): {
        "CANCELLED_BY_PATRON": "the patron cancelled the reservation",
        "CANCELLED_BY_STAFF": "an operator cancelled the reservation",
    },
}

IS = ItemState

ITEM_TRANSITIONS: dict[tuple[ItemState, ItemState], dict[str, str]] = {
    (IS.ON_SHELF, IS.ON_LOAN): {"CHECKED_OUT": "checked out at the desk"},
    (IS.ON_SHELF, IS.SET_ASIDE): {"RESERVED_ON_SHELF": "reserved while on the shelf: to fetch and set aside"},
    (IS.ON_LOAN, IS.ON_SHELF): {"RETURNED": "returned, nobody waiting: back on the shelf"},
    (IS.ON_LOAN, IS.SET_ASIDE): {
        "RETURNED_FOR_RESERVATION": "returned and set aside for the first in the queue"
    },
    (IS.SET_ASIDE, IS.ON_LOAN): {"CHECKED_OUT_TO_HOLDER": "checked out to the patron it was set aside for"},
    (IS.SET_ASIDE, IS.ON_SHELF): {
        "RESERVATION_CLOSED": "its reservation closed, nobody waiting: back on the shelf"
    },
    (IS.SET_ASIDE, IS.SET_ASIDE): {
        "PASSED_ON": "its reservation closed: set aside for the next in the queue"
    },
}


class InvalidTransition(FailedPrecondition):
    pass


def check_reservation_transition(
    source: ReservationStatus | None, target: ReservationStatus, reason: str
) -> None:
    if reason not in RESERVATION_TRANSITIONS.get((source, target), {}):
        raise InvalidTransition(
            "INVALID_RESERVATION_TRANSITION",
            f"a reservation cannot go from {source} to {target} ({reason})",
            metadata={"from": str(source), "to": target.value, "reason": reason},
        )


def check_item_transition(source: ItemState, target: ItemState, reason: str) -> None:
    if reason not in ITEM_TRANSITIONS.get((source, target), {}):
        raise InvalidTransition(
            "INVALID_ITEM_TRANSITION",
            f"an item cannot go from {source} to {target} ({reason})",
            metadata={"from": source.value, "to": target.value, "reason": reason},
        )


# --- the things ----------------------------------------------------------------------------------


@dataclass
class Transition:
    from_status: ReservationStatus | None
    to_status: ReservationStatus
    reason: str
    at: datetime
    actor: str


@dataclass
class Reservation:
    id: str
    patron_id: str
    item_barcode: str
    pickup_branch: str
    origin: Origin
    status: ReservationStatus
    created_at: datetime
    #: Arrival order among all reservations of the item; decides the queue.
    queue_seq: int = 0
    #: 1..n among the WAITING_FOR_RETURN reservations of the item; None otherwise.
    queue_position: int | None = None
    ready_at: datetime | None = None
    called_at: datetime | None = None
    notified_at: datetime | None = None
    pickup_deadline: datetime | None = None
    auto_expire: bool = True
    #: When the item reached the hold shelf; None while it is still to fetch from the open shelf.
    fetched_at: datetime | None = None
    #: When the "pickup deadline is near" reminder was queued (at most once).
    reminded_at: datetime | None = None
    closed_at: datetime | None = None
    status_reason: str = ""
    note: str = ""
    patron_card_barcode: str = ""
    #: The patron category's pickup period as known at creation (fallback when patrons is down).
    pickup_period_days: int = 7
    version: int = 1
    history: list[Transition] = field(default_factory=list)
    #: Transitions recorded since load (the store appends only these).
    new_history: list[Transition] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def move(self, target: ReservationStatus, reason: str, at: datetime, actor: str) -> None:
        source = self.status
        check_reservation_transition(source, target, reason)
        self._record(source, target, reason, at, actor)

    def _record(
        self,
        source: ReservationStatus | None,
        target: ReservationStatus,
        reason: str,
        at: datetime,
        actor: str,
    ) -> None:
        step = Transition(source, target, reason, at, actor)
        self.history.append(step)
        self.new_history.append(step)
        self.status = target
        self.status_reason = reason
        if target is R.READY_FOR_PICKUP:
            self.ready_at = at
        if target not in ACTIVE_STATUSES:
            self.closed_at = at
            self.queue_position = None
        if target is not R.WAITING_FOR_RETURN:
            self.queue_position = None

    def start_pickup_clock(self, told_at: datetime, period_days: int) -> bool:
        """The clock starts when the patron was first told; later calls never move it."""
        if self.pickup_deadline is not None:
            return False
        self.pickup_deadline = pickup_deadline(told_at, period_days)
        return True


@dataclass
class Loan:
    id: str
    item_barcode: str
    patron_id: str
    checked_out_at: datetime
    due_date: date
    branch: str
    patron_card_barcode: str = ""
    reservation_id: str | None = None
    returned_at: datetime | None = None
    returned_branch: str = ""


@dataclass
class Item:
    barcode: str
    title: str
    author: str
    branch: str
    call_number: str = ""
    state: ItemState = ItemState.ON_SHELF
    state_reason: str = ""
    set_aside_for: str | None = None
    version: int = 1

    def move(self, target: ItemState, reason: str) -> None:
        check_item_transition(self.state, target, reason)
        self.state = target
        self.state_reason = reason
        if target is not ItemState.SET_ASIDE:
            self.set_aside_for = None


# --- events written to the outbox ----------------------------------------------------------------


@dataclass(frozen=True)
class ReservationReady:
    """The item is on the hold shelf for the patron: tell them (notice template ``template_key``)."""

    reservation_id: str
    patron_id: str
    item_barcode: str
    #: "reservation_ready" (was on the shelf / passed on) or "item_back_from_loan" (V4).
    template_key: str


@dataclass(frozen=True)
class ReservationExpired:
    reservation_id: str
    patron_id: str
    item_barcode: str


@dataclass(frozen=True)
class PickupReminder:
    """The pickup deadline is near and the patron has not come yet."""

    reservation_id: str
    patron_id: str
    item_barcode: str


Event = ReservationReady | ReservationExpired | PickupReminder


# --- rules on dates ------------------------------------------------------------------------------


def pickup_deadline(told_at: datetime, period_days: int) -> datetime:
    return told_at + timedelta(days=max(1, period_days))


def due_date(checked_out_on: date, loan_period_days: int) -> date:
    return checked_out_on + timedelta(days=loan_period_days)


def expected_available_date(
    today: date,
    state: ItemState,
    loan_due: date | None,
    reservations_ahead: int,
    loan_period_days: int,
) -> date:
    """When a copy becomes available to someone with ``reservations_ahead`` active reservations
    ahead of them: from the due date (never in the past), then one loan period per patron ahead.
    A copy set aside counts its holder among those ahead."""
    start = today
    if state is ItemState.ON_LOAN and loan_due is not None:
        start = max(loan_due, today)
    return start + timedelta(days=loan_period_days * max(0, reservations_ahead))


# --- the aggregate -------------------------------------------------------------------------------


class Circulation:
    """One item copy, its open loan and its active reservations. Every desk action on the copy
    happens here, so the rules live in one place."""

    def __init__(self, item: Item, loan: Loan | None, active: list[Reservation], next_seq: int) -> None:
        self.item = item
        self.loan = loan
        self.active = sorted(active, key=lambda r: r.queue_seq)
        self.next_seq = next_seq
        #: Reservations touched (new or changed), by id, for the store.
        self.changed: dict[str, Reservation] = {}
        self.new_loan: Loan | None = None
        self.closed_loan: Loan | None = None
        self.events: list[Event] = []
        self.item_changed = False
        self._check_invariants()

    # -- views

    @property
    def ready(self) -> Reservation | None:
        return next((r for r in self.active if r.status is R.READY_FOR_PICKUP), None)

    @property
    def waiting(self) -> list[Reservation]:
        return [r for r in self.active if r.status is R.WAITING_FOR_RETURN]

    def active_for(self, patron_id: str) -> Reservation | None:
        return next((r for r in self.active if r.patron_id == patron_id), None)

    def find(self, reservation_id: str) -> Reservation | None:
        return next((r for r in self.active if r.id == reservation_id), None)

    def expected_date_for(self, reservation: Reservation, today: date, loan_period_days: int) -> date | None:
        """V4/V6: expected date a waiting reservation's item becomes available to its patron."""
        if reservation.status is not R.WAITING_FOR_RETURN or reservation.queue_position is None:
            return None
        ahead = reservation.queue_position - 1
        if self.item.state is ItemState.SET_ASIDE:
            ahead += 1
        return expected_available_date(
            today, self.item.state, self.loan.due_date if self.loan else None, ahead, loan_period_days
        )

    def expected_date_for_newcomer(self, today: date, loan_period_days: int) -> date:
        return expected_available_date(
            today,
            self.item.state,
            self.loan.due_date if self.loan else None,
            len(self.active),
            loan_period_days,
        )

    # -- actions

    def reserve(
        self,
        *,
        reservation_id: str,
        patron_id: str,
        patron_card_barcode: str,
        pickup_branch: str,
        origin: Origin,
        now: datetime,
        actor: str,
        pickup_period_days: int,
        auto_expire: bool,
        note: str = "",
    ) -> Reservation:
        """V1/V4: a new reservation, set aside at once or queued."""
        self._refuse_duplicate(patron_id)
        reservation = self._new_reservation(
            reservation_id,
            patron_id,
            patron_card_barcode,
            pickup_branch,
            origin,
            now,
            pickup_period_days,
            auto_expire,
            note,
        )
        if self.item.state is ItemState.ON_SHELF:
            check_reservation_transition(None, R.READY_FOR_PICKUP, "ITEM_ON_SHELF")
            reservation._record(None, R.READY_FOR_PICKUP, "ITEM_ON_SHELF", now, actor)
            self._set_aside(reservation, "RESERVED_ON_SHELF")
        else:
            reason = "ITEM_ON_LOAN" if self.item.state is ItemState.ON_LOAN else "ITEM_SET_ASIDE_FOR_ANOTHER"
            check_reservation_transition(None, R.WAITING_FOR_RETURN, reason)
            reservation._record(None, R.WAITING_FOR_RETURN, reason, now, actor)
            reservation.queue_position = len(self.waiting) + 1
        self.active.append(reservation)
        self._touch(reservation)
        self._check_invariants()
        return reservation

    def reserve_and_deliver(
        self,
        *,
        reservation_id: str,
        loan_id: str,
        patron_id: str,
        patron_card_barcode: str,
        pickup_branch: str,
        origin: Origin,
        now: datetime,
        today: date,
        actor: str,
        loan_period_days: int,
        pickup_period_days: int,
        note: str = "",
    ) -> tuple[Reservation, Loan]:
        """ "Reserve and deliver now": create and fulfil in one step; the copy must be free."""
        self._refuse_duplicate(patron_id)
        if self.item.state is not ItemState.ON_SHELF:
            raise FailedPrecondition(
                "ITEM_NOT_AVAILABLE",
                f"item {self.item.barcode} is {self.item.state.value.lower().replace('_', ' ')}: "
                "it cannot be delivered now; reserve it instead",
                metadata={"item_barcode": self.item.barcode, "item_state": self.item.state.value},
            )
        reservation = self._new_reservation(
            reservation_id,
            patron_id,
            patron_card_barcode,
            pickup_branch,
            origin,
            now,
            pickup_period_days,
            False,
            note,
        )
        check_reservation_transition(None, R.FULFILLED, "DELIVERED_NOW")
        reservation._record(None, R.FULFILLED, "DELIVERED_NOW", now, actor)
        self._touch(reservation)
        loan = self._lend(
            loan_id,
            patron_id,
            patron_card_barcode,
            now,
            today,
            loan_period_days,
            pickup_branch,
            reservation.id,
            "CHECKED_OUT",
        )
        return reservation, loan

    def check_out(
        self,
        *,
        loan_id: str,
        patron_id: str,
        patron_card_barcode: str,
        branch: str,
        now: datetime,
        today: date,
        actor: str,
        loan_period_days: int,
    ) -> tuple[Loan, Reservation | None]:
        """V6 delivery: an ordinary check-out; a copy set aside for this patron fulfils their
        reservation, one set aside for someone else is refused."""
        if self.item.state is ItemState.ON_LOAN:
            assert self.loan is not None
            if self.loan.patron_id == patron_id:
                raise FailedPrecondition(
                    "ALREADY_ON_LOAN_TO_PATRON",
                    f"item {self.item.barcode} is already on loan to this patron",
                    metadata={"item_barcode": self.item.barcode, "due_date": self.loan.due_date.isoformat()},
                )
            raise FailedPrecondition(
                "ITEM_ON_LOAN",
                f"item {self.item.barcode} is on loan to another patron until "
                f"{self.loan.due_date.isoformat()}: check it in first",
                metadata={"item_barcode": self.item.barcode, "due_date": self.loan.due_date.isoformat()},
            )
        fulfilled: Reservation | None = None
        if self.item.state is ItemState.SET_ASIDE:
            ready = self.ready
            assert ready is not None
            if ready.patron_id != patron_id:
                raise FailedPrecondition(
                    "ITEM_SET_ASIDE_FOR_ANOTHER_PATRON",
                    f"item {self.item.barcode} is set aside for another patron's reservation",
                    metadata={"item_barcode": self.item.barcode, "reservation_id": ready.id},
                )
            ready.move(R.FULFILLED, "CHECKED_OUT", now, actor)
            self.active.remove(ready)
            self._touch(ready)
            fulfilled = ready
        loan = self._lend(
            loan_id,
            patron_id,
            patron_card_barcode,
            now,
            today,
            loan_period_days,
            branch,
            fulfilled.id if fulfilled else None,
            "CHECKED_OUT_TO_HOLDER" if fulfilled else "CHECKED_OUT",
        )
        self._check_invariants()
        return loan, fulfilled

    def check_in(self, *, now: datetime, branch: str, actor: str) -> tuple[Loan, Reservation | None]:
        """V4: the copy comes back; the first in the queue gets it, or it goes back on the shelf."""
        if self.item.state is not ItemState.ON_LOAN or self.loan is None:
            raise FailedPrecondition(
                "ITEM_NOT_ON_LOAN",
                f"item {self.item.barcode} is not on loan (it is "
                f"{self.item.state.value.lower().replace('_', ' ')})",
                metadata={"item_barcode": self.item.barcode, "item_state": self.item.state.value},
            )
        loan = self.loan
        loan.returned_at = now
        loan.returned_branch = branch
        self.closed_loan = loan
        self.loan = None
        waiting = self.waiting
        ready: Reservation | None = None
        if waiting:
            ready = waiting[0]
            ready.move(R.READY_FOR_PICKUP, "ITEM_RETURNED", now, actor)
            self._touch(ready)
            self._set_aside(ready, "RETURNED_FOR_RESERVATION")
            self._renumber()
            if not branch or branch == ready.pickup_branch:
                # The operator holds it at the pickup desk: straight to the hold shelf, tell the patron.
                ready.fetched_at = now
                self.events.append(
                    ReservationReady(ready.id, ready.patron_id, self.item.barcode, "item_back_from_loan")
                )
            # Returned elsewhere: it travels to the pickup branch, whose desk confirms its arrival
            # (ConfirmItemSetAside) before the patron is told.
        else:
            self.item.move(ItemState.ON_SHELF, "RETURNED")
            self.item_changed = True
        self._check_invariants()
        return loan, ready

    def cancel(
        self, reservation_id: str, *, by_patron: bool, now: datetime, actor: str, note: str
    ) -> Reservation | None:
        """Cancel an active reservation; a ready one passes its copy on. Returns who got it."""
        reservation = self._active_or_refuse(reservation_id)
        was_ready = reservation.status is R.READY_FOR_PICKUP
        reservation.move(
            R.CANCELLED, "CANCELLED_BY_PATRON" if by_patron else "CANCELLED_BY_STAFF", now, actor
        )
        if note:
            reservation.note = note
        self.active.remove(reservation)
        self._touch(reservation)
        passed_to = self._pass_on(reservation, now, actor) if was_ready else None
        self._renumber()
        self._check_invariants()
        return passed_to

    def expire(self, reservation_id: str, *, now: datetime, actor: str) -> Reservation | None:
        """V2: the patron did not collect the copy in time. Returns who gets it next, if anyone."""
        reservation = self._active_or_refuse(reservation_id)
        if not is_overdue(reservation, now):
            raise FailedPrecondition(
                "PICKUP_DEADLINE_NOT_PASSED",
                "the reservation is not past an automatic pickup deadline",
                metadata={"reservation_id": reservation.id},
            )
        reservation.move(R.EXPIRED, "PICKUP_DEADLINE_PASSED", now, actor)
        self.active.remove(reservation)
        self._touch(reservation)
        self.events.append(ReservationExpired(reservation.id, reservation.patron_id, self.item.barcode))
        passed_to = self._pass_on(reservation, now, actor)
        self._renumber()
        self._check_invariants()
        return passed_to

    def remind(self, reservation_id: str, *, now: datetime, window: timedelta) -> bool:
        """Queues one reminder when an automatic deadline is within ``window``; False if not due."""
        reservation = self.find(reservation_id)
        if reservation is None or not reminder_due(reservation, now, window):
            return False
        reservation.reminded_at = now
        self._touch(reservation)
        self.events.append(PickupReminder(reservation.id, reservation.patron_id, self.item.barcode))
        return True

    def confirm_fetched(self, reservation_id: str, *, now: datetime) -> Reservation:
        """V1: the copy is on the pickup branch's hold shelf (taken off the open shelf, or arrived
        from the branch where it was returned); now the patron can be told."""
        reservation = self._active_or_refuse(reservation_id)
        if reservation.status is not R.READY_FOR_PICKUP:
            raise FailedPrecondition(
                "RESERVATION_NOT_READY",
                "the item is not set aside for this reservation yet",
                metadata={"reservation_id": reservation.id, "status": reservation.status.value},
            )
        if reservation.fetched_at is None:
            reservation.fetched_at = now
            self._touch(reservation)
            returned = reservation.status_reason == "ITEM_RETURNED"
            template = "item_back_from_loan" if returned else "reservation_ready"
            self.events.append(
                ReservationReady(reservation.id, reservation.patron_id, self.item.barcode, template)
            )
        return reservation

    def record_told(
        self, reservation_id: str, *, at: datetime, period_days: int, called: bool, auto_expire: bool | None
    ) -> Reservation:
        """V2: the patron was called (phone action) or the ready notice was delivered."""
        reservation = self._active_or_refuse(reservation_id)
        if reservation.status is not R.READY_FOR_PICKUP:
            raise FailedPrecondition(
                "RESERVATION_NOT_READY",
                "the item is not set aside for this reservation yet: there is nothing to collect",
                metadata={"reservation_id": reservation.id, "status": reservation.status.value},
            )
        if called:
            reservation.called_at = at
        elif reservation.notified_at is None:
            reservation.notified_at = at
        if auto_expire is not None:
            reservation.auto_expire = auto_expire
        reservation.start_pickup_clock(at, period_days)
        self._touch(reservation)
        return reservation

    # -- internals

    def _new_reservation(
        self,
        reservation_id: str,
        patron_id: str,
        card: str,
        pickup_branch: str,
        origin: Origin,
        now: datetime,
        pickup_period_days: int,
        auto_expire: bool,
        note: str,
    ) -> Reservation:
        seq = self.next_seq
        self.next_seq += 1
        return Reservation(
            id=reservation_id,
            patron_id=patron_id,
            item_barcode=self.item.barcode,
            pickup_branch=pickup_branch,
            origin=origin,
            status=R.WAITING_FOR_RETURN,
            created_at=now,
            queue_seq=seq,
            auto_expire=auto_expire,
            note=note,
            patron_card_barcode=card,
            pickup_period_days=pickup_period_days,
            version=0,
        )

    def _refuse_duplicate(self, patron_id: str) -> None:
        mine = self.active_for(patron_id)
        if mine is not None:
            raise FailedPrecondition(
                "ALREADY_RESERVED",
                f"the patron already has an active reservation of item {self.item.barcode}",
                metadata={"reservation_id": mine.id, "item_barcode": self.item.barcode},
            )
        if self.loan is not None and self.loan.patron_id == patron_id:
            raise FailedPrecondition(
                "ALREADY_ON_LOAN_TO_PATRON",
                f"the patron already has item {self.item.barcode} on loan",
                metadata={"item_barcode": self.item.barcode, "due_date": self.loan.due_date.isoformat()},
            )

    def _active_or_refuse(self, reservation_id: str) -> Reservation:
        reservation = self.find(reservation_id)
        if reservation is None:
            raise FailedPrecondition(
                "RESERVATION_CLOSED",
                "the reservation is no longer active",
                metadata={"reservation_id": reservation_id},
            )
        return reservation

    def _lend(
        self,
        loan_id: str,
        patron_id: str,
        card: str,
        now: datetime,
        today: date,
        loan_period_days: int,
        branch: str,
        reservation_id: str | None,
        item_reason: str,
    ) -> Loan:
        loan = Loan(
            id=loan_id,
            item_barcode=self.item.barcode,
            patron_id=patron_id,
            checked_out_at=now,
            due_date=due_date(today, loan_period_days),
            branch=branch,
            patron_card_barcode=card,
            reservation_id=reservation_id,
        )
        self.item.move(ItemState.ON_LOAN, item_reason)
        self.item_changed = True
        self.loan = loan
        self.new_loan = loan
        return loan

    def _set_aside(self, reservation: Reservation, item_reason: str) -> None:
        self.item.move(ItemState.SET_ASIDE, item_reason)
        self.item.set_aside_for = reservation.id
        self.item_changed = True

    def _pass_on(self, closed: Reservation, now: datetime, actor: str) -> Reservation | None:
        """The copy of a closed ready reservation goes to the next in the queue or to the shelf —
        automatically: no "clear the hold shelf" chore."""
        waiting = self.waiting
        if not waiting:
            self.item.move(ItemState.ON_SHELF, "RESERVATION_CLOSED")
            self.item_changed = True
            return None
        nxt = waiting[0]
        nxt.move(R.READY_FOR_PICKUP, "PASSED_ON", now, actor)
        # The copy stays where it is: on the hold shelf if it was fetched, else on the open shelf.
        on_that_hold_shelf = closed.fetched_at is not None and closed.pickup_branch == nxt.pickup_branch
        nxt.fetched_at = now if on_that_hold_shelf else None
        self._touch(nxt)
        self._set_aside(nxt, "PASSED_ON")
        if nxt.fetched_at is not None:
            self.events.append(
                ReservationReady(nxt.id, nxt.patron_id, self.item.barcode, "reservation_ready")
            )
        return nxt

    def _renumber(self) -> None:
        for position, reservation in enumerate(self.waiting, start=1):
            if reservation.queue_position != position:
                reservation.queue_position = position
                self._touch(reservation)

    def _touch(self, reservation: Reservation) -> None:
        self.changed[reservation.id] = reservation

    def _check_invariants(self) -> None:
        ready = [r for r in self.active if r.status is R.READY_FOR_PICKUP]
        assert len(ready) <= 1, "at most one reservation is ready per copy"
        if self.item.state is ItemState.SET_ASIDE:
            assert ready and self.item.set_aside_for == ready[0].id, (
                "a set-aside copy belongs to the ready one"
            )
        else:
            assert not ready, "a ready reservation has its copy set aside"
        assert (self.item.state is ItemState.ON_LOAN) == (self.loan is not None), "on loan iff open loan"
        if self.item.state is ItemState.ON_SHELF:
            assert not self.active, "nobody waits for a copy on the shelf"
        positions = [r.queue_position for r in self.waiting]
        assert positions == list(range(1, len(positions) + 1)), f"queue positions 1..n, got {positions}"


def is_overdue(reservation: Reservation, now: datetime) -> bool:
    return (
        reservation.status is R.READY_FOR_PICKUP
        and reservation.auto_expire
        and reservation.pickup_deadline is not None
        and reservation.pickup_deadline <= now
    )


def reminder_due(reservation: Reservation, now: datetime, window: timedelta) -> bool:
    return (
        reservation.status is R.READY_FOR_PICKUP
        and reservation.auto_expire
        and reservation.reminded_at is None
        and reservation.pickup_deadline is not None
        and now < reservation.pickup_deadline <= now + window
    )


def new_id() -> str:
    return str(uuid.uuid4())
