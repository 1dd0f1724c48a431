"""Use cases: one function per desk action, each one transaction (``db.write(fn, ...)``).

Every mutation on a copy first takes the copy's row lock (``load_circulation``), so concurrent
reservations, check-ins, cancellations and the sweeper on the same copy run one after the other,
and side effects (notices) go to the outbox in the same transaction as the state change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from bibliodesk.runtime.clock import Clock
from bibliodesk.runtime.errors import Aborted, FailedPrecondition, NotFound, PermissionDenied
from bibliodesk.runtime.outbox import enqueue
from bibliodesk.runtime.settings import Settings, SettingsError

from .. import domain
from ..domain import Circulation, Item, ItemState, Loan, Origin, Reservation
from ..store import repository as repo
from ..store.tables import items, outbox

NOTICE_TOPIC = "notify.send_message"


@dataclass(frozen=True)
class Policy:
    """Circulation rules from configuration (``BIBLIODESK_RESERVATIONS_*``)."""

    loan_period_days: int = 30
    #: Used when the patrons service cannot say the patron category's pickup period.
    default_pickup_period_days: int = 7
    #: Whether a reservation expires automatically once the patron was told (the phone action
    #: can switch it off per reservation).
    auto_expire_default: bool = True
    sweep_interval_seconds: float = 60.0
    #: Remind the patron this many hours before an automatic pickup deadline (0: never).
    reminder_hours_before: float = 24.0
    #: Deadline of calls to patrons; past it the patron's standing counts as unknown.
    peer_timeout_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        def number(key: str, default: float, low: float, high: float) -> float:
            raw = settings.get(f"RESERVATIONS_{key}", "")
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"BIBLIODESK_RESERVATIONS_{key} must be a number, got {raw!r}") from None
            if not low <= value <= high:
                raise SettingsError(f"BIBLIODESK_RESERVATIONS_{key} must be between {low} and {high}")
            return value

        auto = settings.get("RESERVATIONS_AUTO_EXPIRE", "true").strip().lower()
        return cls(
            loan_period_days=int(number("LOAN_PERIOD_DAYS", 30, 1, 365)),
            default_pickup_period_days=int(number("PICKUP_PERIOD_DAYS", 7, 1, 60)),
            auto_expire_default=auto not in ("0", "false", "no", "off"),
            sweep_interval_seconds=number("SWEEP_INTERVAL_SECONDS", 60, 0.05, 86400),
            reminder_hours_before=number("REMINDER_HOURS_BEFORE", 24, 0, 24 * 30),
            peer_timeout_seconds=number("PEER_TIMEOUT_SECONDS", 5, 0.1, 120),
        )


@dataclass(frozen=True)
class PatronFacts:
    """What the patrons service told us about a patron (None when it could not be asked)."""

    patron_id: str
    card_barcode: str = ""
    enrolled: bool = True
    blocked: bool = False
    reservation_limit: int = 0
    loan_limit: int = 0
    pickup_period_days: int = 0


@dataclass(frozen=True)
class Ctx:
    """What every use case needs besides the session: the clock and the circulation rules."""

    clock: Clock
    policy: Policy


def _today(ctx: Ctx, now: datetime) -> date:
    return now.astimezone(ctx.clock.tz).date()


def _local_day(ctx: Ctx, when: datetime) -> str:
    return when.astimezone(ctx.clock.tz).date().isoformat()


def _pickup_period(ctx: Ctx, facts: PatronFacts | None, fallback: int | None = None) -> int:
    if facts is not None and facts.pickup_period_days > 0:
        return facts.pickup_period_days
    return fallback or ctx.policy.default_pickup_period_days


def lock_item(session: Session, barcode: str) -> None:
    """Take the copy's lock before anything else (even the idempotency look-up), so a concurrent
    retry of the same request waits and then finds the first answer. The use case loads the
    copy's circulation afterwards, under that lock."""
    repo.lock_item_row(session, barcode)


def _circulation(session: Session, barcode: str) -> Circulation:
    c = repo.load_circulation(session, barcode)
    if c is None:
        raise NotFound(
            "ITEM_NOT_FOUND", f"no item copy has barcode {barcode}", metadata={"item_barcode": barcode}
        )
    return c


def _save(session: Session, ctx: Ctx, c: Circulation, now: datetime) -> None:
    events = list(c.events)
    touched = {**{r.id: r for r in c.active}, **c.changed}
    repo.save_circulation(session, c, now)
    for event in events:
        _enqueue_notice(session, ctx, c.item, touched[event.reservation_id], event, now)
    c.events.clear()


def _enqueue_notice(
    session: Session, ctx: Ctx, item: Item, reservation: Reservation, event: domain.Event, now: datetime
) -> None:
    variables = {"title": item.title, "author": item.author, "item_barcode": item.barcode}
    variables["pickup_branch"] = reservation.pickup_branch
    if isinstance(event, domain.ReservationReady):
        template, kind = event.template_key, "ready"
        variables["pickup_period_days"] = str(reservation.pickup_period_days)
        if reservation.pickup_deadline is not None:
            variables["pickup_deadline"] = _local_day(ctx, reservation.pickup_deadline)
    elif isinstance(event, domain.PickupReminder):
        template, kind = "pickup_reminder", "reminder"
        assert reservation.pickup_deadline is not None
        variables["pickup_deadline"] = _local_day(ctx, reservation.pickup_deadline)
    else:
        template, kind = "reservation_expired", "expired"
        variables["expired_on"] = _today(ctx, now).isoformat()
    enqueue(
        session,
        outbox,
        NOTICE_TOPIC,
        f"reservation:{event.reservation_id}:{kind}",
        {
            "patron_id": event.patron_id,
            "template_key": template,
            "variables": variables,
            "reference": f"reservation:{event.reservation_id}",
            "reservation_id": event.reservation_id,
            "kind": kind,
        },
        now=now,
    )


# --- reservations --------------------------------------------------------------------------------


@dataclass
class Created:
    reservation: Reservation
    loan: Loan | None
    circulation: Circulation


def create_reservation(
    session: Session,
    ctx: Ctx,
    *,
    patron_id: str,
    item_barcode: str,
    pickup_branch: str,
    origin: Origin,
    deliver_now: bool,
    note: str,
    facts: PatronFacts | None,
    actor: str,
) -> Created:
    now = ctx.clock.now()
    if facts is not None:
        _check_standing(facts)
        if (
            facts.reservation_limit > 0
            and repo.count_active_reservations(session, patron_id) >= facts.reservation_limit
        ):
            raise FailedPrecondition(
                "RESERVATION_LIMIT_REACHED",
                f"the patron already has {facts.reservation_limit} active reservations, the category's limit",
                metadata={"patron_id": patron_id, "limit": str(facts.reservation_limit)},
            )
    c = _circulation(session, item_barcode)
    card = facts.card_barcode if facts else ""
    period = _pickup_period(ctx, facts)
    loan: Loan | None = None
    if deliver_now:
        if facts is not None:
            _check_loan_limit(session, facts)
        reservation, loan = c.reserve_and_deliver(
            reservation_id=domain.new_id(),
            loan_id=domain.new_id(),
            patron_id=patron_id,
            patron_card_barcode=card,
            pickup_branch=pickup_branch,
            origin=origin,
            now=now,
            today=_today(ctx, now),
            actor=actor,
            loan_period_days=ctx.policy.loan_period_days,
            pickup_period_days=period,
            note=note,
        )
    else:
        reservation = c.reserve(
            reservation_id=domain.new_id(),
            patron_id=patron_id,
            patron_card_barcode=card,
            pickup_branch=pickup_branch,
            origin=origin,
            now=now,
            actor=actor,
            pickup_period_days=period,
            auto_expire=ctx.policy.auto_expire_default,
            note=note,
        )
    _save(session, ctx, c, now)
    return Created(reservation, loan, c)


def _check_standing(facts: PatronFacts) -> None:
    if not facts.enrolled:
        raise FailedPrecondition(
            "PATRON_NOT_ENROLLED",
            "the patron is not (or no longer) enrolled",
            metadata={"patron_id": facts.patron_id},
        )
    if facts.blocked:
        raise FailedPrecondition(
            "PATRON_BLOCKED", "the patron is blocked", metadata={"patron_id": facts.patron_id}
        )


def _check_loan_limit(session: Session, facts: PatronFacts) -> None:
    if facts.loan_limit > 0 and repo.count_open_loans(session, facts.patron_id) >= facts.loan_limit:
        raise FailedPrecondition(
            "LOAN_LIMIT_REACHED",
            f"the patron already has {facts.loan_limit} items on loan, the category's limit",
            metadata={"patron_id": facts.patron_id, "limit": str(facts.loan_limit)},
        )


def reservation_for_update(session: Session, reservation_id: str) -> tuple[Circulation, Reservation]:
    """The copy of a reservation, locked, and the reservation in it (or CLOSED / NOT_FOUND)."""
    barcode = repo.item_barcode_of(session, reservation_id)
    if barcode is None:
        raise NotFound(
            "RESERVATION_NOT_FOUND",
            f"no reservation {reservation_id}",
            metadata={"reservation_id": reservation_id},
        )
    c = _circulation(session, barcode)
    reservation = c.find(reservation_id)
    if reservation is None:
        closed = repo.get_reservation(session, reservation_id)
        assert closed is not None
        raise FailedPrecondition(
            "RESERVATION_CLOSED",
            f"the reservation is already {closed.status.value.lower().replace('_', ' ')}",
            metadata={"reservation_id": reservation_id, "status": closed.status.value},
        )
    return c, reservation


def _check_etag(reservation: Reservation, etag: str) -> None:
    if etag and etag != etag_of(reservation):
        raise Aborted(
            "ETAG_MISMATCH",
            "the reservation changed since it was read; read it again",
            metadata={"reservation_id": reservation.id, "etag": etag_of(reservation)},
        )


def etag_of(reservation: Reservation) -> str:
    return f"{reservation.version}"


@dataclass
class Cancelled:
    reservation: Reservation
    passed_to: Reservation | None
    circulation: Circulation


def cancel_reservation(
    session: Session, ctx: Ctx, *, reservation_id: str, by_patron: str, etag: str, reason: str, actor: str
) -> Cancelled:
    """``by_patron``: the calling patron's id (they may cancel only their own), empty for staff."""
    now = ctx.clock.now()
    c, reservation = reservation_for_update(session, reservation_id)
    if by_patron and reservation.patron_id != by_patron:
        raise PermissionDenied("NOT_YOUR_RECORD", "a patron can cancel only their own reservations")
    _check_etag(reservation, etag)
    passed_to = c.cancel(reservation_id, by_patron=bool(by_patron), now=now, actor=actor, note=reason)
    _save(session, ctx, c, now)
    return Cancelled(reservation, passed_to, c)


def record_patron_told(
    session: Session,
    ctx: Ctx,
    *,
    reservation_id: str,
    at: datetime | None,
    called: bool,
    auto_expire: bool | None,
    note: str,
    etag: str,
    facts: PatronFacts | None,
) -> tuple[Reservation, Circulation]:
    now = ctx.clock.now()
    barcode = repo.item_barcode_of(session, reservation_id) if not called else None
    if barcode is not None:
        c = _circulation(session, barcode)
        found = c.find(reservation_id)  # the copy's active reservations
        if found is None:
            # A notice delivered after the patron collected or cancelled changes nothing: say so
            # without an error, so notify's relay does not report a failure.
            closed = repo.get_reservation(session, reservation_id)
            assert closed is not None and not closed.active
            return closed, c
        reservation = found
    else:
        c, reservation = reservation_for_update(session, reservation_id)
    _check_etag(reservation, etag)
    period = _pickup_period(ctx, facts, reservation.pickup_period_days)
    if not called and reservation.status is domain.ReservationStatus.WAITING_FOR_RETURN:
        # Nothing is set aside for this reservation: a notice cannot start a clock.
        raise FailedPrecondition(
            "RESERVATION_NOT_READY",
            "the item is not set aside for this reservation",
            metadata={"reservation_id": reservation_id},
        )
    c.record_told(reservation_id, at=at or now, period_days=period, called=called, auto_expire=auto_expire)
    if note:
        reservation.note = note
    _save(session, ctx, c, now)
    return reservation, c


def confirm_item_set_aside(
    session: Session, ctx: Ctx, *, reservation_id: str
) -> tuple[Reservation, Circulation]:
    now = ctx.clock.now()
    c, reservation = reservation_for_update(session, reservation_id)
    c.confirm_fetched(reservation_id, now=now)
    _save(session, ctx, c, now)
    return reservation, c


def expire_one(
    session: Session, ctx: Ctx, *, reservation_id: str, actor: str
) -> tuple[Reservation, Reservation | None] | None:
    """Expires one overdue reservation; None if it is no longer overdue (collected, cancelled or
    its deadline moved since it was listed)."""
    now = ctx.clock.now()
    barcode = repo.item_barcode_of(session, reservation_id)
    if barcode is None:
        return None
    c = _circulation(session, barcode)
    reservation = c.find(reservation_id)
    if reservation is None or not domain.is_overdue(reservation, now):
        return None
    passed_to = c.expire(reservation_id, now=now, actor=actor)
    _save(session, ctx, c, now)
    return reservation, passed_to


def remind_one(session: Session, ctx: Ctx, *, reservation_id: str) -> bool:
    """Queues the "pickup deadline is near" notice once; False if no longer due."""
    now = ctx.clock.now()
    barcode = repo.item_barcode_of(session, reservation_id)
    if barcode is None:
        return False
    c = _circulation(session, barcode)
    window = timedelta(hours=ctx.policy.reminder_hours_before)
    if not c.remind(reservation_id, now=now, window=window):
        return False
    _save(session, ctx, c, now)
    return True


# --- circulation ---------------------------------------------------------------------------------


@dataclass
class CheckedOut:
    loan: Loan
    fulfilled: Reservation | None
    circulation: Circulation


def check_out(
    session: Session,
    ctx: Ctx,
    *,
    item_barcode: str,
    patron_id: str,
    facts: PatronFacts | None,
    branch: str,
    actor: str,
    card_barcode: str = "",
) -> CheckedOut:
    now = ctx.clock.now()
    if facts is not None:
        _check_standing(facts)
        _check_loan_limit(session, facts)
    c = _circulation(session, item_barcode)
    loan, fulfilled = c.check_out(
        loan_id=domain.new_id(),
        patron_id=patron_id,
        patron_card_barcode=card_barcode or (facts.card_barcode if facts else ""),
        branch=branch or c.item.branch,
        now=now,
        today=_today(ctx, now),
        actor=actor,
        loan_period_days=ctx.policy.loan_period_days,
    )
    _save(session, ctx, c, now)
    return CheckedOut(loan, fulfilled, c)


@dataclass
class CheckedIn:
    loan: Loan
    ready: Reservation | None
    circulation: Circulation


def check_in(session: Session, ctx: Ctx, *, item_barcode: str, branch: str, actor: str) -> CheckedIn:
    now = ctx.clock.now()
    c = _circulation(session, item_barcode)
    loan, ready = c.check_in(now=now, branch=branch or c.item.branch, actor=actor)
    _save(session, ctx, c, now)
    return CheckedIn(loan, ready, c)


@dataclass
class ImportReport:
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[domain.RejectedRow] = field(default_factory=list)


def import_items(
    session: Session,
    ctx: Ctx,
    *,
    csv_content: str,
    first_line_number: int,
    default_branch: str,
    dry_run: bool,
) -> ImportReport:
    """Holdings load: new copies go ON_SHELF; known ones get bibliographic data, never a state."""
    now = ctx.clock.now()
    rows, rejected = domain.parse_holdings(
        csv_content, first_line_number=first_line_number, default_branch=default_branch
    )
    report = ImportReport(rows_read=len(rows) + len(rejected), rejected=rejected)
    existing = repo.existing_items(session, [r.barcode for r in rows])
    new_rows: list[dict[str, Any]] = []
    for row in rows:
        values = {
            "title": row.title,
            "author": row.author,
            "branch": row.branch,
            "call_number": row.call_number,
        }
        known = existing.get(row.barcode)
        if known is None:
            report.created += 1
            new_rows.append(
                {
                    "barcode": row.barcode,
                    **values,
                    "state": ItemState.ON_SHELF.value,
                    "state_reason": "IMPORTED",
                    "set_aside_for": None,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        elif all(getattr(known, k) == v for k, v in values.items()):
            report.unchanged += 1
        else:
            report.updated += 1
            if not dry_run:
                session.execute(
                    update(items)
                    .where(items.c.barcode == row.barcode)
                    .values(**values, version=items.c.version + 1, updated_at=now)
                )
    if new_rows and not dry_run:
        session.execute(insert(items), new_rows)
    return report


def notice_still_relevant(session: Session, reservation_id: str, kind: str) -> bool:
    """A "ready" notice whose reservation was cancelled, collected or passed on before the relay
    delivered it must not tell the patron to come: it is dropped."""
    if kind not in ("ready", "reminder"):
        return True
    return repo.status_of_reservation(session, reservation_id) is domain.ReservationStatus.READY_FOR_PICKUP


# --- reads ---------------------------------------------------------------------------------------


@dataclass
class ScheduleEntry:
    reservation: Reservation
    location: str  # "ON_THE_SHELF" | "WITH_A_LIBRARY_USER"
    expected: date | None
    title: str
    author: str


@dataclass
class Schedule:
    loans: list[tuple[Loan, Item]]
    materials: list[ScheduleEntry]
    today: date


def patron_schedule(session: Session, ctx: Ctx, patron_id: str) -> Schedule:
    """V6: the patron's loans and "materials to deliver" (only reservations that exist)."""
    today = ctx.clock.today()
    open_loans = repo.patron_open_loans(session, patron_id)
    active = repo.patron_active_reservations(session, patron_id)
    circs = repo.read_circulations(
        session, [ln.item_barcode for ln in open_loans] + [r.item_barcode for r in active]
    )
    materials: list[ScheduleEntry] = []
    for r in active:
        c = circs[r.item_barcode]
        mine = c.find(r.id) or r
        if mine.status is domain.ReservationStatus.READY_FOR_PICKUP:
            materials.append(ScheduleEntry(mine, "ON_THE_SHELF", None, c.item.title, c.item.author))
        else:
            expected = c.expected_date_for(mine, today, ctx.policy.loan_period_days)
            materials.append(
                ScheduleEntry(mine, "WITH_A_LIBRARY_USER", expected, c.item.title, c.item.author)
            )
    materials.sort(
        key=lambda e: (e.location != "ON_THE_SHELF", e.expected or today, e.reservation.created_at)
    )
    return Schedule([(ln, circs[ln.item_barcode].item) for ln in open_loans], materials, today)
