"""An outgoing message and its delivery state machine (pure: no gRPC, no SQL).

    QUEUED ──delivered──▶ SENT
      │  └─temporary failure──▶ RETRYING ──delivered──▶ SENT
      │                           │  └─temporary failure (budget left)──▶ RETRYING
      ├─permanent failure / budget spent──▶ FAILED ◀──────┘
      └─cancelled by staff──▶ CANCELLED ◀── RETRYING
    FAILED ──retried by staff──▶ QUEUED

Every transition carries a reason, recorded by the store alongside the attempt.
"""

from __future__ import annotations

import enum
import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .errors import Conflict, IllegalTransition


class MessageStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    SENT = "SENT"
    RETRYING = "RETRYING"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Transition(enum.StrEnum):
    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary failure, will retry"
    PERMANENT_FAILURE = "permanently refused"
    BUDGET_SPENT = "retry budget spent"
    CANCELLED = "cancelled by staff"
    RETRIED = "retried by staff"


S = MessageStatus
# (from, transition) -> to. Anything not listed is illegal.
TRANSITIONS: dict[tuple[MessageStatus, Transition], MessageStatus] = {
    (S.QUEUED, Transition.DELIVERED): S.SENT,
    (S.QUEUED, Transition.TEMPORARY_FAILURE): S.RETRYING,
    (S.QUEUED, Transition.PERMANENT_FAILURE): S.FAILED,
    (S.QUEUED, Transition.BUDGET_SPENT): S.FAILED,
    (S.QUEUED, Transition.CANCELLED): S.CANCELLED,
    (S.RETRYING, Transition.DELIVERED): S.SENT,
    (S.RETRYING, Transition.TEMPORARY_FAILURE): S.RETRYING,
    (S.RETRYING, Transition.PERMANENT_FAILURE): S.FAILED,
    (S.RETRYING, Transition.BUDGET_SPENT): S.FAILED,
    (S.RETRYING, Transition.CANCELLED): S.CANCELLED,
    (S.FAILED, Transition.RETRIED): S.QUEUED,
}

PENDING = frozenset({S.QUEUED, S.RETRYING})
FINAL = frozenset({S.SENT, S.CANCELLED})


def next_status(current: MessageStatus, transition: Transition) -> MessageStatus:
    try:
        return TRANSITIONS[(current, transition)]
    except KeyError:
        raise IllegalTransition(
            f"a {current.value} message cannot be {transition.value}", reason="ILLEGAL_TRANSITION"
        ) from None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter and a budget of attempts."""

    max_attempts: int = 8
    base_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=1)
    jitter: float = 0.2  # +/- 20 %

    def delay_after(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """Delay before the next attempt, after `attempts` failed ones (attempts >= 1)."""
        raw = self.base_delay.total_seconds() * (2 ** max(0, attempts - 1))
        capped = min(raw, self.max_delay.total_seconds())
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return timedelta(seconds=max(0.0, capped * (1 + spread)))

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


def message_id_header(idempotency_key: str, domain: str) -> str:
    """RFC 5322 Message-ID derived from the idempotency key: the same key always yields the same id,
    so a resend after a crash is recognisable as the same message by the receiving side."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{domain}>"


@dataclass
class AttemptOutcome:
    """What one delivery attempt produced."""

    delivered: bool
    permanent: bool = False
    error: str = ""

    @classmethod
    def ok(cls) -> AttemptOutcome:
        return cls(delivered=True)

    @classmethod
    def temporary(cls, error: str) -> AttemptOutcome:
        return cls(delivered=False, permanent=False, error=error)

    @classmethod
    def refused(cls, error: str) -> AttemptOutcome:
        return cls(delivered=False, permanent=True, error=error)


@dataclass
class DeliveryState:
    """The mutable delivery part of a message; the store maps it to columns."""

    status: MessageStatus = MessageStatus.QUEUED
    attempts: int = 0
    last_error: str = ""
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    finished_at: datetime | None = None
    history: list[tuple[MessageStatus, MessageStatus, Transition, str]] = field(default_factory=list)

    def _move(self, transition: Transition, note: str = "") -> MessageStatus:
        before = self.status
        self.status = next_status(before, transition)
        self.history.append((before, self.status, transition, note))
        return self.status

    def record_attempt(
        self, outcome: AttemptOutcome, now: datetime, policy: RetryPolicy, rng: random.Random | None = None
    ) -> Transition:
        """Apply the outcome of one attempt (attempt count already includes it)."""
        if self.status not in PENDING:
            raise IllegalTransition(f"a {self.status.value} message is not waiting for delivery")
        self.attempts += 1
        if outcome.delivered:
            self._move(Transition.DELIVERED)
            self.sent_at = now
            self.next_attempt_at = None
            self.last_error = ""
            return Transition.DELIVERED
        self.last_error = outcome.error[:2000]
        if outcome.permanent:
            transition = Transition.PERMANENT_FAILURE
        elif policy.exhausted(self.attempts):
            transition = Transition.BUDGET_SPENT
        else:
            transition = Transition.TEMPORARY_FAILURE
        self._move(transition, outcome.error)
        if transition is Transition.TEMPORARY_FAILURE:
            self.next_attempt_at = now + policy.delay_after(self.attempts, rng)
        else:
            self.next_attempt_at = None
            self.finished_at = now
        return transition

    def cancel(self, now: datetime, reason: str) -> None:
        if self.status not in PENDING:
            raise Conflict(
                f"only a message waiting for delivery can be cancelled; this one is {self.status.value}",
                reason="MESSAGE_NOT_PENDING",
            )
        self._move(Transition.CANCELLED, reason)
        self.last_error = f"cancelled: {reason}" if reason else "cancelled"
        self.next_attempt_at = None
        self.finished_at = now

    def retry(self, now: datetime, secrets_wiped: bool) -> None:
        if self.status is not MessageStatus.FAILED:
            raise Conflict(
                f"only a FAILED message can be retried; this one is {self.status.value}",
                reason="MESSAGE_NOT_FAILED",
            )
        if secrets_wiped:
            raise Conflict(
                "this message carried secret variables that were wiped when it failed; "
                "issue new credentials instead",
                reason="SECRETS_WIPED",
            )
        self._move(Transition.RETRIED)
        self.attempts = 0
        self.next_attempt_at = now
        self.finished_at = None
