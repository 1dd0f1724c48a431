"""Loading and saving the domain objects. SQLAlchemy Core, so the order of writes is ours: the
partial unique indexes on the queue never see a transient collision."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from bibliodesk.runtime.db import lock_for_update
from bibliodesk.runtime.errors import InvalidArgument

from ..domain import (
    ACTIVE_STATUSES,
    Circulation,
    Item,
    ItemState,
    Loan,
    Origin,
    Reservation,
    ReservationStatus,
    Transition,
)
from .tables import items, loans, reservation_history, reservations

# --- rows <-> domain -----------------------------------------------------------------------------


def item_from_row(row: Row[Any]) -> Item:
    return Item(
        barcode=row.barcode,
        title=row.title,
        author=row.author,
        branch=row.branch,
        call_number=row.call_number,
        state=ItemState(row.state),
        state_reason=row.state_reason,
        set_aside_for=row.set_aside_for,
        version=row.version,
    )


def loan_from_row(row: Row[Any]) -> Loan:
    return Loan(
        id=row.id,
        item_barcode=row.item_barcode,
        patron_id=row.patron_id,
        checked_out_at=row.checked_out_at,
        due_date=row.due_date,
        branch=row.branch,
        patron_card_barcode=row.patron_card_barcode,
        reservation_id=row.reservation_id,
        returned_at=row.returned_at,
        returned_branch=row.returned_branch,
    )


def reservation_from_row(row: Row[Any]) -> Reservation:
    return Reservation(
        id=row.id,
        patron_id=row.patron_id,
        item_barcode=row.item_barcode,
        pickup_branch=row.pickup_branch,
        origin=Origin(row.origin),
        status=ReservationStatus(row.status),
        created_at=row.created_at,
        queue_seq=row.queue_seq,
        queue_position=row.queue_position,
        ready_at=row.ready_at,
        called_at=row.called_at,
        notified_at=row.notified_at,
        pickup_deadline=row.pickup_deadline,
        auto_expire=row.auto_expire,
        fetched_at=row.fetched_at,
        reminded_at=row.reminded_at,
        closed_at=row.closed_at,
        status_reason=row.status_reason,
        note=row.note,
        patron_card_barcode=row.patron_card_barcode,
        pickup_period_days=row.pickup_period_days,
        version=row.version,
    )


def _reservation_values(r: Reservation) -> dict[str, Any]:
    return {
        "status": r.status.value,
        "status_reason": r.status_reason,
        "queue_position": r.queue_position,
        "ready_at": r.ready_at,
        "called_at": r.called_at,
        "notified_at": r.notified_at,
        "pickup_deadline": r.pickup_deadline,
        "auto_expire": r.auto_expire,
        "fetched_at": r.fetched_at,
        "reminded_at": r.reminded_at,
        "closed_at": r.closed_at,
        "note": r.note,
        "patron_card_barcode": r.patron_card_barcode,
    }


def _active_clause() -> Any:
    return reservations.c.status.in_([s.value for s in ACTIVE_STATUSES])


# The statements of the desk's hot path, built once: constructing a statement and its cache key
# on every call costs more than running it (the bind values are passed at execution).
@functools.cache
def _update_reservation(names: tuple[str, ...]) -> Any:
    """UPDATE of the given columns (the keys of ``_reservation_values``) and the version."""
    return (
        update(reservations)
        .where(reservations.c.id == bindparam("b_id"))
        .values({**{name: bindparam(f"b_{name}") for name in names}, "version": reservations.c.version + 1})
    )


_SET_QUEUE_POSITION = (
    update(reservations)
    .where(reservations.c.id == bindparam("b_id"))
    .values(queue_position=bindparam("b_queue_position"))
)
_CLOSE_LOAN = (
    update(loans)
    .where(loans.c.id == bindparam("b_id"))
    .values(returned_at=bindparam("b_returned_at"), returned_branch=bindparam("b_returned_branch"))
)
_UPDATE_ITEM = (
    update(items)
    .where(items.c.barcode == bindparam("b_barcode"))
    .values(
        state=bindparam("b_state"),
        state_reason=bindparam("b_state_reason"),
        set_aside_for=bindparam("b_set_aside_for"),
        updated_at=bindparam("b_updated_at"),
        version=items.c.version + 1,
    )
)
_OPEN_LOAN_OF = select(loans).where(
    loans.c.item_barcode == bindparam("barcode"), loans.c.returned_at.is_(None)
)
_ACTIVE_OF = select(reservations).where(reservations.c.item_barcode == bindparam("barcode"), _active_clause())
_LAST_SEQ_OF = select(func.max(reservations.c.queue_seq)).where(
    reservations.c.item_barcode == bindparam("barcode")
)


_ITEMS_IN = select(items).where(items.c.barcode.in_(bindparam("barcodes", expanding=True)))
_OPEN_LOANS_IN = select(loans).where(
    loans.c.item_barcode.in_(bindparam("barcodes", expanding=True)), loans.c.returned_at.is_(None)
)
_ACTIVE_IN = select(reservations).where(
    reservations.c.item_barcode.in_(bindparam("barcodes", expanding=True)), _active_clause()
)


def _bound(values: dict[str, Any]) -> dict[str, Any]:
    return {f"b_{k}": v for k, v in values.items()}


# --- the aggregate -------------------------------------------------------------------------------


def consistent_snapshot(session: Session) -> None:
    """First statement of a read transaction: one snapshot for all its queries (PostgreSQL's
    default READ COMMITTED gives each statement its own). SQLite readers already see one snapshot."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))


def load_circulation(session: Session, barcode: str) -> Circulation | None:
    """Loads a copy with its open loan and active reservations, holding the copy's row lock (on
    PostgreSQL; SQLite write transactions are serialised) until the transaction ends."""
    row = session.execute(lock_for_update(select(items).where(items.c.barcode == barcode), session)).first()
    if row is None:
        return None
    return _assemble(session, row)


def lock_item_row(session: Session, barcode: str) -> None:
    """Takes the copy's row lock only (PostgreSQL; SQLite write transactions are serialised)."""
    session.execute(lock_for_update(select(items.c.barcode).where(items.c.barcode == barcode), session))


def read_circulation(session: Session, barcode: str) -> Circulation | None:
    """The same, without a lock, for reads."""
    row = session.execute(select(items).where(items.c.barcode == barcode)).first()
    return None if row is None else _assemble(session, row)


def read_circulations(session: Session, barcodes: Sequence[str]) -> dict[str, Circulation]:
    """Several copies in three queries (one page of an inbox, never one query per row)."""
    if not barcodes:
        return {}
    item_rows = session.execute(_ITEMS_IN, {"barcodes": list(barcodes)}).all()
    found = [r.barcode for r in item_rows]
    open_loans = {
        r.item_barcode: loan_from_row(r) for r in session.execute(_OPEN_LOANS_IN, {"barcodes": found})
    }
    active: dict[str, list[Reservation]] = {b: [] for b in found}
    for r in session.execute(_ACTIVE_IN, {"barcodes": found}):
        active[r.item_barcode].append(reservation_from_row(r))
    return {
        r.barcode: Circulation(item_from_row(r), open_loans.get(r.barcode), active[r.barcode], 0)
        for r in item_rows
    }


def _assemble(session: Session, item_row: Row[Any]) -> Circulation:
    key = {"barcode": item_row.barcode}
    loan_row = session.execute(_OPEN_LOAN_OF, key).first()
    active = [reservation_from_row(r) for r in session.execute(_ACTIVE_OF, key)]
    last_seq = session.execute(_LAST_SEQ_OF, key).scalar_one()
    return Circulation(
        item_from_row(item_row), loan_from_row(loan_row) if loan_row else None, active, (last_seq or 0) + 1
    )


def save_circulation(session: Session, c: Circulation, now: datetime) -> None:
    """Writes what the aggregate changed, in an order that never trips the unique indexes:
    closed reservations first (freeing the READY slot and positions), then the active ones with
    provisional negative positions, then the final positions, then the new rows."""
    existing = {r.id for r in c.changed.values() if r.version > 0}
    changed_existing = [r for r in c.changed.values() if r.id in existing]
    new = [r for r in c.changed.values() if r.id not in existing]
    if c.closed_loan is not None:
        closed = c.closed_loan
        session.execute(
            _CLOSE_LOAN,
            {
                "b_id": closed.id,
                "b_returned_at": closed.returned_at,
                "b_returned_branch": closed.returned_branch,
            },
        )
    for r in sorted(changed_existing, key=lambda r: r.status in ACTIVE_STATUSES):
        values = _reservation_values(r)
        if r.status is ReservationStatus.WAITING_FOR_RETURN:
            values["queue_position"] = -(r.queue_position or 0)
        session.execute(_update_reservation(tuple(values)), {"b_id": r.id, **_bound(values)})
        r.version += 1
    for r in changed_existing:
        if r.status is ReservationStatus.WAITING_FOR_RETURN:
            session.execute(_SET_QUEUE_POSITION, {"b_id": r.id, "b_queue_position": r.queue_position})
    if c.item_changed:
        item = c.item
        session.execute(
            _UPDATE_ITEM,
            {
                "b_barcode": item.barcode,
                "b_state": item.state.value,
                "b_state_reason": item.state_reason,
                "b_set_aside_for": item.set_aside_for,
                "b_updated_at": now,
            },
        )
        c.item.version += 1
    for r in new:
        session.execute(
            insert(reservations),
            {
                "id": r.id,
                "patron_id": r.patron_id,
                "item_barcode": r.item_barcode,
                "pickup_branch": r.pickup_branch,
                "origin": r.origin.value,
                "queue_seq": r.queue_seq,
                "created_at": r.created_at,
                "pickup_period_days": r.pickup_period_days,
                "version": 1,
                **_reservation_values(r),
            },
        )
        r.version = 1
    if c.new_loan is not None:
        loan = c.new_loan
        session.execute(
            insert(loans).values(
                id=loan.id,
                item_barcode=loan.item_barcode,
                patron_id=loan.patron_id,
                patron_card_barcode=loan.patron_card_barcode,
                checked_out_at=loan.checked_out_at,
                due_date=loan.due_date,
                branch=loan.branch,
                reservation_id=loan.reservation_id,
                returned_at=None,
                returned_branch="",
            )
        )
    steps = [(r.id, t) for r in c.changed.values() for t in r.new_history]
    if steps:
        session.execute(
            insert(reservation_history),
            [
                {
                    "reservation_id": rid,
                    "from_status": t.from_status.value if t.from_status else None,
                    "to_status": t.to_status.value,
                    "reason": t.reason,
                    "at": t.at,
                    "actor": t.actor[:120],
                }
                for rid, t in steps
            ],
        )
    for r in c.changed.values():
        r.new_history.clear()
    c.changed.clear()
    c.item_changed = False
    c.new_loan = None
    c.closed_loan = None


# --- reads ---------------------------------------------------------------------------------------


def _column_of(session: Session, column: Any, reservation_id: str) -> Any:
    """One column of one reservation (None if there is no such reservation)."""
    return session.execute(select(column).where(reservations.c.id == reservation_id)).scalar_one_or_none()


def item_barcode_of(session: Session, reservation_id: str) -> str | None:
    return _column_of(session, reservations.c.item_barcode, reservation_id)


def patron_of_reservation(session: Session, reservation_id: str) -> str | None:
    return _column_of(session, reservations.c.patron_id, reservation_id)


def status_of_reservation(session: Session, reservation_id: str) -> ReservationStatus | None:
    status = _column_of(session, reservations.c.status, reservation_id)
    return None if status is None else ReservationStatus(status)


def get_reservation(session: Session, reservation_id: str) -> Reservation | None:
    row = session.execute(select(reservations).where(reservations.c.id == reservation_id)).first()
    if row is None:
        return None
    reservation = reservation_from_row(row)
    attach_history(session, [reservation])
    return reservation


def attach_history(session: Session, found: Iterable[Reservation]) -> None:
    by_id = {r.id: r for r in found}
    if not by_id:
        return
    for r in by_id.values():
        r.history = []
    rows = session.execute(
        select(reservation_history)
        .where(reservation_history.c.reservation_id.in_(list(by_id)))
        .order_by(reservation_history.c.id)
    )
    for h in rows:
        by_id[h.reservation_id].history.append(
            Transition(
                ReservationStatus(h.from_status) if h.from_status else None,
                ReservationStatus(h.to_status),
                h.reason,
                h.at,
                h.actor,
            )
        )


@dataclass(frozen=True)
class ReservationFilter:
    patron_id: str = ""
    origin: Origin | None = None
    statuses: tuple[ReservationStatus, ...] = ()
    pickup_branch: str = ""
    item_barcode: str = ""


def encode_token(values: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def decode_token(token: str, field: str = "page_token") -> dict[str, Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(values, dict):
            raise ValueError
        return values
    except Exception:
        raise InvalidArgument(field=field, description="is not a token this service returned") from None


def list_reservations(
    session: Session, f: ReservationFilter, page_size: int, page_token: str
) -> tuple[list[Reservation], str]:
    query = select(reservations)
    if f.patron_id:
        query = query.where(reservations.c.patron_id == f.patron_id)
    if f.origin is not None:
        query = query.where(reservations.c.origin == f.origin.value)
    if f.statuses:
        query = query.where(reservations.c.status.in_([s.value for s in f.statuses]))
    if f.pickup_branch:
        query = query.where(reservations.c.pickup_branch == f.pickup_branch)
    if f.item_barcode:
        query = query.where(reservations.c.item_barcode == f.item_barcode)
    if page_token:
        after = decode_token(page_token)
        try:
            at, rid = datetime.fromisoformat(after["c"]), str(after["i"])
        except (KeyError, ValueError):
            raise InvalidArgument(
                field="page_token", description="is not a token this service returned"
            ) from None
        query = query.where(
            or_(
                reservations.c.created_at > at, and_(reservations.c.created_at == at, reservations.c.id > rid)
            )
        )
    rows = session.execute(
        query.order_by(reservations.c.created_at, reservations.c.id).limit(page_size + 1)
    ).all()
    found = [reservation_from_row(r) for r in rows[:page_size]]
    attach_history(session, found)
    token = ""
    if len(rows) > page_size:
        last = found[-1]
        token = encode_token({"c": last.created_at.isoformat(), "i": last.id})
    return found, token


def overdue_reservations(session: Session, now: datetime, limit: int) -> list[tuple[str, str]]:
    """(reservation id, item barcode) of READY reservations past an automatic deadline."""
    rows = session.execute(
        select(reservations.c.id, reservations.c.item_barcode)
        .where(
            reservations.c.status == ReservationStatus.READY_FOR_PICKUP.value,
            reservations.c.auto_expire.is_(True),
            reservations.c.pickup_deadline.is_not(None),
            reservations.c.pickup_deadline <= now,
        )
        .order_by(reservations.c.pickup_deadline)
        .limit(limit)
    ).all()
    return [(r.id, r.item_barcode) for r in rows]


def reminders_due(session: Session, now: datetime, window: timedelta, limit: int) -> list[str]:
    """READY reservations with an automatic deadline within ``window`` and no reminder yet."""
    rows = session.execute(
        select(reservations.c.id)
        .where(
            reservations.c.status == ReservationStatus.READY_FOR_PICKUP.value,
            reservations.c.auto_expire.is_(True),
            reservations.c.reminded_at.is_(None),
            reservations.c.pickup_deadline > now,
            reservations.c.pickup_deadline <= now + window,
        )
        .order_by(reservations.c.pickup_deadline)
        .limit(limit)
    ).scalars()
    return list(rows)


def to_set_aside(session: Session, branch: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
    """READY reservations whose copy is not on the pickup branch's hold shelf yet: still on the open
    shelf (V1) or returned at another branch and on its way; oldest first."""
    query = (
        select(reservations.c.id, reservations.c.item_barcode, reservations.c.ready_at)
        .join(items, items.c.barcode == reservations.c.item_barcode)
        .where(
            reservations.c.status == ReservationStatus.READY_FOR_PICKUP.value,
            reservations.c.fetched_at.is_(None),
        )
    )
    if branch:
        # The branch that owns the copy (fetch it, or send it) and the one that receives it.
        query = query.where(or_(items.c.branch == branch, reservations.c.pickup_branch == branch))
    if page_token:
        after = decode_token(page_token)
        try:
            at, rid = datetime.fromisoformat(after["r"]), str(after["i"])
        except (KeyError, ValueError):
            raise InvalidArgument(
                field="page_token", description="is not a token this service returned"
            ) from None
        query = query.where(
            or_(reservations.c.ready_at > at, and_(reservations.c.ready_at == at, reservations.c.id > rid))
        )
    rows = session.execute(
        query.order_by(reservations.c.ready_at, reservations.c.id).limit(page_size + 1)
    ).all()
    token = ""
    if len(rows) > page_size:
        last = rows[page_size - 1]
        token = encode_token({"r": last.ready_at.isoformat(), "i": last.id})
    return list(rows[:page_size]), token


def list_items(
    session: Session, branch: str, state: ItemState | None, page_size: int, page_token: str
) -> tuple[list[str], str]:
    query = select(items.c.barcode)
    if branch:
        query = query.where(items.c.branch == branch)
    if state is not None:
        query = query.where(items.c.state == state.value)
    if page_token:
        after = decode_token(page_token)
        query = query.where(items.c.barcode > str(after.get("b", "")))
    rows = session.execute(query.order_by(items.c.barcode).limit(page_size + 1)).scalars().all()
    token = encode_token({"b": rows[page_size - 1]}) if len(rows) > page_size else ""
    return list(rows[:page_size]), token


def patron_open_loans(session: Session, patron_id: str) -> list[Loan]:
    rows = session.execute(
        select(loans)
        .where(loans.c.patron_id == patron_id, loans.c.returned_at.is_(None))
        .order_by(loans.c.due_date)
    )
    return [loan_from_row(r) for r in rows]


def patron_active_reservations(session: Session, patron_id: str) -> list[Reservation]:
    rows = session.execute(
        select(reservations)
        .where(reservations.c.patron_id == patron_id, _active_clause())
        .order_by(reservations.c.created_at)
    )
    return [reservation_from_row(r) for r in rows]


def count_active_reservations(session: Session, patron_id: str) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(reservations)
            .where(reservations.c.patron_id == patron_id, _active_clause())
        ).scalar_one()
    )


def count_open_loans(session: Session, patron_id: str) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(loans)
            .where(loans.c.patron_id == patron_id, loans.c.returned_at.is_(None))
        ).scalar_one()
    )


def existing_items(session: Session, barcodes: Iterable[str]) -> dict[str, Row[Any]]:
    wanted = list(barcodes)
    found: dict[str, Row[Any]] = {}
    for start in range(0, len(wanted), 500):
        for r in session.execute(select(items).where(items.c.barcode.in_(wanted[start : start + 500]))):
            found[r.barcode] = r
    return found


def counts_by_status(session: Session) -> dict[str, int]:
    """Active reservations per status, and copies still to fetch from the shelf (for metrics)."""
    rows = session.execute(
        select(reservations.c.status, func.count()).where(_active_clause()).group_by(reservations.c.status)
    ).all()
    found = {status.value: 0 for status in ACTIVE_STATUSES}
    found.update({r[0]: int(r[1]) for r in rows})
    found["TO_FETCH"] = int(
        session.execute(
            select(func.count())
            .select_from(reservations)
            .where(
                reservations.c.status == ReservationStatus.READY_FOR_PICKUP.value,
                reservations.c.fetched_at.is_(None),
            )
        ).scalar_one()
    )
    return found
