"""Pure rules of the request inbox: the state machine, the submission rules, the library's day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bibliodesk.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from services.requests.domain.model import (
    FINAL_STATUSES,
    TRANSITIONS,
    AdvanceMode,
    CutReason,
    ItemSituation,
    PatronActivity,
    PatronStanding,
    RequestEvent,
    RequestStatus,
    ReservationRequest,
    check_can_request,
    transition,
)

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


def make_request(**kw: object) -> ReservationRequest:
    values: dict[str, object] = dict(
        id="r1", patron_id="p1", item_barcode="B1", pickup_branch="CENTRAL", note="", created_at=NOW
    )
    values.update(kw)
    return ReservationRequest(**values)  # type: ignore[arg-type]


def test_every_transition_has_a_reason_and_no_final_state_moves() -> None:
    assert all(t.reason for t in TRANSITIONS)
    sources = {t.source for t in TRANSITIONS}
    assert RequestStatus.ADVANCED not in sources
    assert RequestStatus.CUT not in sources
    assert RequestStatus.WITHDRAWN not in sources


@pytest.mark.parametrize(
    "status,reason",
    [
        (RequestStatus.ADVANCED, "REQUEST_ALREADY_ADVANCED"),
        (RequestStatus.CUT, "REQUEST_ALREADY_CUT"),
        (RequestStatus.WITHDRAWN, "REQUEST_WITHDRAWN"),
        (RequestStatus.ADVANCING, "REQUEST_BEING_ADVANCED"),
    ],
)
def test_acting_on_a_request_no_longer_pending_gives_a_stable_reason(
    status: RequestStatus, reason: str
) -> None:
    with pytest.raises(FailedPrecondition) as err:
        transition(status, RequestEvent.CUT)
    assert err.value.reason == reason
    assert err.value.metadata["status"] == status.value


def test_advance_goes_through_advancing_and_records_the_reservation() -> None:
    r = make_request()
    r.start_advance(AdvanceMode.RESERVE, "op1", NOW)
    assert r.status is RequestStatus.ADVANCING and r.is_active
    r.complete_advance("res-9", NOW + timedelta(seconds=1))
    assert r.status is RequestStatus.ADVANCED and not r.is_active
    assert r.reservation_id == "res-9"
    assert [h.event for h in r.history] == [RequestEvent.ADVANCE_STARTED, RequestEvent.RESERVATION_CREATED]
    with pytest.raises(FailedPrecondition) as err:
        r.start_advance(AdvanceMode.RESERVE, "op2", NOW)
    assert err.value.reason == "REQUEST_ALREADY_ADVANCED"


def test_a_refused_reservation_puts_the_request_back_in_the_inbox_with_the_why() -> None:
    r = make_request()
    r.start_advance(AdvanceMode.RESERVE_AND_DELIVER, "op1", NOW)
    r.refuse_advance("ITEM_SET_ASIDE_FOR_ANOTHER_PATRON", NOW)
    assert r.status is RequestStatus.PENDING
    assert r.advance_mode is None
    assert r.last_refusal == "ITEM_SET_ASIDE_FOR_ANOTHER_PATRON"


def test_cut_without_notice_is_refused_unless_confirmed_or_sent_with_the_cut() -> None:
    r = make_request()
    with pytest.raises(FailedPrecondition) as err:
        r.cut(CutReason.ITEM_MISSING, "", "op1", NOW, notice_with_cut=False, confirm_without_notice=False)
    assert err.value.reason == "NOTICE_NOT_SENT"
    assert r.status is RequestStatus.PENDING

    r.cut(CutReason.ITEM_MISSING, "", "op1", NOW, notice_with_cut=False, confirm_without_notice=True)
    assert r.status is RequestStatus.CUT and r.cut_reason is CutReason.ITEM_MISSING

    r2 = make_request()
    r2.cut(CutReason.ITEM_MISSING, "", "op1", NOW, notice_with_cut=True, confirm_without_notice=False)
    assert r2.status is RequestStatus.CUT


def test_cut_after_the_notice_needs_no_confirmation() -> None:
    r = make_request()
    r.record_notice("op1", NOW)
    r.cut(CutReason.PATRON_NOT_ELIGIBLE, "", "op1", NOW, notice_with_cut=False, confirm_without_notice=False)
    assert r.status is RequestStatus.CUT


def test_cut_for_another_reason_needs_words() -> None:
    r = make_request()
    with pytest.raises(InvalidArgument) as err:
        r.cut(CutReason.OTHER, "  ", "op1", NOW, notice_with_cut=False, confirm_without_notice=True)
    assert [v.field for v in err.value.violations] == ["explanation"]


def test_notice_is_sent_once_only() -> None:
    r = make_request()
    assert r.can_send_notice
    r.record_notice("op1", NOW)
    assert not r.can_send_notice
    with pytest.raises(FailedPrecondition) as err:
        r.record_notice("op2", NOW)
    assert err.value.reason == "NOTICE_ALREADY_SENT"


def test_no_notice_on_a_withdrawn_request() -> None:
    r = make_request()
    r.withdraw("p1", NOW)
    assert not r.can_send_notice
    with pytest.raises(FailedPrecondition) as err:
        r.record_notice("op1", NOW)
    assert err.value.reason == "REQUEST_WITHDRAWN"


STANDING = PatronStanding(
    patron_id="p1", enrolled=True, blocked=False, status="ACTIVE", reservation_limit=2, home_branch="CENTRAL"
)
NOTHING = PatronActivity(frozenset(), frozenset(), 0)


@pytest.mark.parametrize(
    "standing,item,activity,reason",
    [
        (
            PatronStanding("p1", False, False, "INCOMPLETE", 2, ""),
            ItemSituation("B1", True),
            NOTHING,
            "PATRON_NOT_ENROLLED",
        ),
        (
            PatronStanding("p1", False, True, "SUSPENDED", 2, ""),
            ItemSituation("B1", True),
            NOTHING,
            "PATRON_BLOCKED",
        ),
        (STANDING, ItemSituation("B1", False), NOTHING, "ITEM_NOT_FOUND"),
        (STANDING, ItemSituation("B1", True, borrower_patron_id="p1"), NOTHING, "ITEM_ALREADY_ON_LOAN"),
        (
            STANDING,
            ItemSituation("B1", True),
            PatronActivity(frozenset({"B1"}), frozenset(), 0),
            "ALREADY_REQUESTED",
        ),
        (
            STANDING,
            ItemSituation("B1", True),
            PatronActivity(frozenset(), frozenset({"B1"}), 1),
            "ALREADY_RESERVED",
        ),
        (
            STANDING,
            ItemSituation("B1", True),
            PatronActivity(frozenset({"B2"}), frozenset({"B3"}), 1),
            "RESERVATION_LIMIT_REACHED",
        ),
    ],
)
def test_submission_is_refused_with_a_clear_reason(
    standing: PatronStanding, item: ItemSituation, activity: PatronActivity, reason: str
) -> None:
    with pytest.raises((FailedPrecondition, NotFound)) as err:
        check_can_request(standing, item, activity)
    assert err.value.reason == reason


def test_submission_accepted_for_an_item_on_loan_to_somebody_else_under_the_limit() -> None:
    check_can_request(
        STANDING,
        ItemSituation("B1", True, borrower_patron_id="p2"),
        PatronActivity(frozenset({"B2"}), frozenset(), 0),
    )


def test_a_retry_of_the_same_advance_resumes_while_another_operator_is_refused() -> None:
    r = make_request()
    assert r.start_advance(AdvanceMode.RESERVE, "op1", NOW, key="k1") is True
    assert r.start_advance(AdvanceMode.RESERVE, "op1", NOW, key="k1") is False  # resume, no new step
    with pytest.raises(FailedPrecondition) as err:
        r.start_advance(AdvanceMode.RESERVE, "op2", NOW, key="k2")
    assert err.value.reason == "REQUEST_BEING_ADVANCED"
    assert len(r.history) == 1


def test_submission_starts_the_history() -> None:
    r = ReservationRequest.submit(
        id="r9",
        patron_id="p1",
        item_barcode="B1",
        pickup_branch="CEN",
        note="",
        actor="patron:p1",
        now=NOW,
        item_title="Il nome della rosa",
    )
    assert r.status is RequestStatus.PENDING and r.item_title == "Il nome della rosa"
    assert r.history[0].event is RequestEvent.SUBMITTED and r.history[0].source is None


OPERATIONS = (
    "advance_k1",
    "advance_k2",
    "complete",
    "refuse",
    "cut",
    "cut_confirmed",
    "withdraw",
    "notice",
    "notice_failed",
)


@given(st.lists(st.sampled_from(OPERATIONS), max_size=12))
def test_any_sequence_of_desk_actions_keeps_the_request_sound(ops: list[str]) -> None:
    r = make_request()
    final_seen: RequestStatus | None = None
    for i, op in enumerate(ops):
        now = NOW + timedelta(minutes=i)
        before = (r.status, len(r.history), r.notice_sent_at)
        try:
            if op.startswith("advance"):
                r.start_advance(AdvanceMode.RESERVE, "op", now, key=op[-2:])
            elif op == "complete":
                r.complete_advance(f"res-{i}", now)
            elif op == "refuse":
                r.refuse_advance("ITEM_NOT_AVAILABLE", now)
            elif op.startswith("cut"):
                r.cut(
                    CutReason.ITEM_MISSING,
                    "",
                    "op",
                    now,
                    notice_with_cut=False,
                    confirm_without_notice=op == "cut_confirmed",
                )
            elif op == "withdraw":
                r.withdraw("patron", now)
            elif op == "notice":
                r.record_notice("op", now)
            else:
                r.notice_failed("NO_EMAIL_ADDRESS", now)
        except (FailedPrecondition, InvalidArgument):
            assert (r.status, len(r.history), r.notice_sent_at) == before  # a refusal changes nothing
        if final_seen is not None:
            assert r.status is final_seen  # a closed request never moves again
        elif r.status in FINAL_STATUSES:
            final_seen = r.status
        assert (r.status is RequestStatus.ADVANCED) == bool(r.reservation_id)
        assert r.can_send_notice == (
            r.notice_sent_at is None and r.status not in {RequestStatus.CUT, RequestStatus.WITHDRAWN}
        )
        notices = sum(h.event is RequestEvent.NOTICE_SENT for h in r.history)
        failures = sum(h.event is RequestEvent.NOTICE_FAILED for h in r.history)
        assert notices - failures == (1 if r.notice_sent_at else 0)  # at most one notice stands
