"""Domain objects → protobuf messages (and the enums both ways)."""

from __future__ import annotations

from datetime import date

from bibliodesk.reservations.v1 import reservations_pb2 as pb
from bibliodesk.runtime.pbtime import timestamp as ts

from .app.use_cases import etag_of
from .domain import Circulation, Item, ItemState, Loan, Origin, Reservation, ReservationStatus

ORIGIN_TO_PB = {
    Origin.WEB: pb.RESERVATION_ORIGIN_WEB,
    Origin.DESK: pb.RESERVATION_ORIGIN_DESK,
    Origin.SELF_CHECK: pb.RESERVATION_ORIGIN_SELF_CHECK,
}
ORIGIN_FROM_PB = {v: k for k, v in ORIGIN_TO_PB.items()}

STATUS_TO_PB = {
    ReservationStatus.WAITING_FOR_RETURN: pb.RESERVATION_STATUS_WAITING_FOR_RETURN,
    ReservationStatus.READY_FOR_PICKUP: pb.RESERVATION_STATUS_READY_FOR_PICKUP,
    ReservationStatus.FULFILLED: pb.RESERVATION_STATUS_FULFILLED,
    ReservationStatus.EXPIRED: pb.RESERVATION_STATUS_EXPIRED,
    ReservationStatus.CANCELLED: pb.RESERVATION_STATUS_CANCELLED,
}
STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}

STATE_TO_PB = {
    ItemState.ON_SHELF: pb.ITEM_STATE_ON_SHELF,
    ItemState.ON_LOAN: pb.ITEM_STATE_ON_LOAN,
    ItemState.SET_ASIDE: pb.ITEM_STATE_SET_ASIDE,
}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}


def day(value: date | None) -> str:
    return value.isoformat() if value else ""


def reservation(
    r: Reservation, *, title: str = "", author: str = "", expected: date | None = None
) -> pb.Reservation:
    message = pb.Reservation(
        id=r.id,
        patron_id=r.patron_id,
        item_barcode=r.item_barcode,
        item_title=title,
        item_author=author,
        pickup_branch=r.pickup_branch,
        origin=ORIGIN_TO_PB[r.origin],
        status=STATUS_TO_PB[r.status],
        queue_position=r.queue_position or 0,
        created_at=ts(r.created_at),
        ready_at=ts(r.ready_at),
        called_at=ts(r.called_at),
        notified_at=ts(r.notified_at),
        pickup_deadline=ts(r.pickup_deadline),
        auto_expire=r.auto_expire,
        expected_available_date=day(expected),
        fetched_at=ts(r.fetched_at),
        closed_at=ts(r.closed_at),
        status_reason=r.status_reason,
        note=r.note,
        etag=etag_of(r),
        patron_card_barcode=r.patron_card_barcode,
        reminded_at=ts(r.reminded_at),
    )
    for step in r.history:
        message.history.add(
            from_status=STATUS_TO_PB[step.from_status]
            if step.from_status
            else pb.RESERVATION_STATUS_UNSPECIFIED,
            to_status=STATUS_TO_PB[step.to_status],
            reason=step.reason,
            at=ts(step.at),
            actor=step.actor,
        )
    return message


def reservation_in(c: Circulation, r: Reservation, today: date, loan_period_days: int) -> pb.Reservation:
    """A reservation of the copy ``c`` (title, author and expected date from the copy)."""
    return reservation(
        r, title=c.item.title, author=c.item.author, expected=c.expected_date_for(r, today, loan_period_days)
    )


def item(c: Circulation, *, personal: bool) -> pb.Item:
    """``personal``: include who borrowed it (staff and service callers only)."""
    i: Item = c.item
    message = pb.Item(
        barcode=i.barcode,
        title=i.title,
        author=i.author,
        branch=i.branch,
        call_number=i.call_number,
        state=STATE_TO_PB[i.state],
        set_aside_for_reservation_id=(i.set_aside_for or "") if personal else "",
        queue_length=len(c.active),
    )
    if c.loan is not None:
        message.due_date = c.loan.due_date.isoformat()
        if personal:
            message.borrower_patron_id = c.loan.patron_id
            message.borrower_card_barcode = c.loan.patron_card_barcode
    return message


def loan(ln: Loan, *, title: str = "", author: str = "") -> pb.Loan:
    return pb.Loan(
        id=ln.id,
        item_barcode=ln.item_barcode,
        patron_id=ln.patron_id,
        checked_out_at=ts(ln.checked_out_at),
        due_date=ln.due_date.isoformat(),
        returned_at=ts(ln.returned_at),
        branch=ln.branch,
        reservation_id=ln.reservation_id or "",
        item_title=title,
        item_author=author,
    )
