"""Domain objects → protobuf messages, and the enums both ways."""

from __future__ import annotations

from bibliodesk.requests.v1 import requests_pb2 as pb
from bibliodesk.reservations.v1 import reservations_pb2 as rpb
from bibliodesk.runtime.pbtime import timestamp as ts

from .domain.model import (
    AdvanceMode,
    CutReason,
    HistoryEntry,
    RequestEvent,
    RequestStatus,
    ReservationRequest,
)

STATUS_TO_PB = {
    RequestStatus.PENDING: pb.RESERVATION_REQUEST_STATUS_PENDING,
    RequestStatus.ADVANCING: pb.RESERVATION_REQUEST_STATUS_ADVANCING,
    RequestStatus.ADVANCED: pb.RESERVATION_REQUEST_STATUS_ADVANCED,
    RequestStatus.CUT: pb.RESERVATION_REQUEST_STATUS_CUT,
    RequestStatus.WITHDRAWN: pb.RESERVATION_REQUEST_STATUS_WITHDRAWN,
}
STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}

MODE_TO_PB = {
    AdvanceMode.RESERVE: pb.ADVANCE_MODE_RESERVE,
    AdvanceMode.RESERVE_AND_DELIVER: pb.ADVANCE_MODE_RESERVE_AND_DELIVER,
}
MODE_FROM_PB = {v: k for k, v in MODE_TO_PB.items()}

CUT_TO_PB = {reason: pb.CutReason.Value(f"CUT_REASON_{reason.value}") for reason in CutReason}
CUT_FROM_PB = {v: k for k, v in CUT_TO_PB.items()}

EVENT_TO_PB = {event: pb.InboxEventKind.Value(f"INBOX_EVENT_KIND_{event.value}") for event in RequestEvent}


def notice_reference(request_id: str) -> str:
    return f"inbox-request:{request_id}"


def history_entry(h: HistoryEntry) -> pb.RequestHistoryEntry:
    return pb.RequestHistoryEntry(
        kind=EVENT_TO_PB[h.event],
        from_status=STATUS_TO_PB[h.source] if h.source else pb.RESERVATION_REQUEST_STATUS_UNSPECIFIED,
        to_status=STATUS_TO_PB[h.target],
        reason=h.reason,
        actor=h.actor,
        at=ts(h.at),
        detail=h.detail,
    )


def reservation_request(
    r: ReservationRequest,
    *,
    availability: rpb.ItemAvailability | None = None,
    history: list[HistoryEntry] | None = None,
) -> pb.ReservationRequest:
    return pb.ReservationRequest(
        id=r.id,
        patron_id=r.patron_id,
        patron_display_name=r.patron_display_name,
        patron_card_barcode=r.patron_card_barcode,
        item_barcode=r.item_barcode,
        item_title=r.item_title,
        item_author=r.item_author,
        pickup_branch=r.pickup_branch,
        note=r.note,
        status=STATUS_TO_PB[r.status],
        created_at=ts(r.created_at),
        updated_at=ts(r.updated_at),
        etag=r.etag,
        advance_mode=MODE_TO_PB[r.advance_mode] if r.advance_mode else pb.ADVANCE_MODE_UNSPECIFIED,
        advanced_by=r.advanced_by,
        advanced_at=ts(r.advanced_at),
        reservation_id=r.reservation_id,
        cut_reason=CUT_TO_PB[r.cut_reason] if r.cut_reason else pb.CUT_REASON_UNSPECIFIED,
        cut_explanation=r.cut_explanation,
        cut_by=r.cut_by,
        cut_at=ts(r.cut_at),
        withdrawn_at=ts(r.withdrawn_at),
        notice_sent_at=ts(r.notice_sent_at),
        notice_sent_by=r.notice_sent_by,
        notice_reference=notice_reference(r.id) if r.notice_sent_at else "",
        can_send_notice=r.can_send_notice,
        last_refusal=r.last_refusal,
        notice_failure=r.notice_failure,
        item_availability=availability,
        history=[history_entry(h) for h in history or ()],
    )


def for_patron(message: pb.ReservationRequest) -> pb.ReservationRequest:
    """What a patron sees of their own request: no operator accounts (who at the desk did what)."""
    message.advanced_by = message.cut_by = message.notice_sent_by = ""
    for step in message.history:
        if step.actor.startswith("staff:"):
            step.actor = "staff"
    return message
