"""The live inbox's reading of the event log: nothing lost when PostgreSQL commits out of id order."""

from __future__ import annotations

from datetime import UTC, datetime

from services.requests.app.inbox import InboxFeed
from services.requests.domain.model import RequestEvent, RequestStatus
from services.requests.store.repository import FeedEvent

AT = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def events(*ids: int) -> list[FeedEvent]:
    return [FeedEvent(i, f"r{i}", RequestEvent.SUBMITTED, RequestStatus.PENDING, AT) for i in ids]


def test_a_late_commit_below_the_cursor_is_still_delivered_and_nothing_twice() -> None:
    feed = InboxFeed(cursor=10, gap_seconds=3600)
    # 12 committed before 11: send 12, but keep the cursor below the hole.
    assert [e.id for e in feed.accept(events(12))] == [12]
    assert feed.cursor == 10
    # 11 commits: it is sent, 12 is not sent again, the cursor moves past both.
    assert [e.id for e in feed.accept(events(11, 12, 13))] == [11, 13]
    assert feed.cursor == 13


def test_a_hole_that_never_fills_is_given_up_after_a_while() -> None:
    feed = InboxFeed(cursor=10, gap_seconds=0)  # a rolled-back insert: id 11 will never exist
    assert [e.id for e in feed.accept(events(12, 13))] == [12, 13]
    assert feed.cursor == 13
    assert feed.accept(events()) == []
