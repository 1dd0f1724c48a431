"""The delivery worker: the relay of the messages table.

SendMessage writes the message row (status QUEUED, due now) in its transaction: that row is the
outbox entry of the e-mail. The worker leases due rows (several replicas never take the same one),
hands each to the transport, and records the attempt, the transition and its reason in one
transaction. A worker that dies between the SMTP server's "250 OK" and that record loses its lease;
the next worker resends the same bytes with the same Message-ID, which is the best SMTP allows.

When a message about a reservation ("reservation:<id>") is delivered, the same transaction enqueues
an outbox row that tells reservations (RecordPatronNotified), so the pickup clock starts only once
the patron was actually told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table
from sqlalchemy.orm import Session

from bibliodesk.runtime.clock import Clock
from bibliodesk.runtime.db import Database
from bibliodesk.runtime.outbox import enqueue
from services.notify.domain.messages import PENDING, AttemptOutcome, MessageStatus, RetryPolicy, Transition
from services.notify.domain.templates import Rendered
from services.notify.store import repository as repo

from .composer import Envelope, compose, plain_address
from .sealing import SealError, SecretBox
from .transport import DeliveryError, Transport

log = logging.getLogger(__name__)

PATRON_NOTIFIED_TOPIC = "reservations.record_patron_notified"
# Notices about a reservation that must not (re)start its pickup clock when delivered.
NOT_A_CALL = frozenset({"pickup_reminder", "reservation_expired"})


@dataclass(frozen=True)
class WorkerConfig:
    mail_from: str
    reply_to: str = ""
    lease: timedelta = timedelta(minutes=2)
    batch_size: int = 10
    poll_interval: float = 2.0
    concurrency: int = 4


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        transport: Transport,
        box: SecretBox,
        policy: RetryPolicy,
        config: WorkerConfig,
        outbox: Table,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.transport = transport
        self.box = box
        self.policy = policy
        self.config = config
        self.outbox = outbox
        self.on_outbox = on_outbox
        self._wake = asyncio.Event()
        self._stopping = False
        self._slots = asyncio.Semaphore(config.concurrency)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        log.info("notify delivery worker started: %s", self.transport.description)
        while not self._stopping:
            self._wake.clear()  # before the pass: a send committed during it wakes the next one
            try:
                done = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery pass failed")
                done = 0
            if done == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.config.poll_interval)

    async def run_once(self) -> int:
        """One pass: lease due messages and attempt each. Returns how many were attempted."""
        now = self.clock.now()
        claimed = await self.db.write(repo.claim_due, now, self.config.lease, self.config.batch_size)
        if claimed:
            await asyncio.gather(*(self._attempt(m) for m in claimed))
        return len(claimed)

    async def drain(self, max_passes: int = 50) -> None:
        """Attempts everything currently due (tests, shutdown)."""
        for _ in range(max_passes):
            if await self.run_once() == 0:
                return

    async def _attempt(self, message: repo.MessageRecord) -> None:
        async with self._slots:
            started = self.clock.now()
            try:
                outcome, detail = await self._hand_over(message)
            except asyncio.CancelledError:
                raise  # killed: record nothing, the lease runs out and another worker resends
            except Exception as exc:  # a bug must not wedge the message: count it against the budget
                log.exception("message %s: unexpected error while sending", message.id)
                detail = f"internal error: {type(exc).__name__}: {exc}"
                outcome = AttemptOutcome.temporary(detail)
            await self.db.write(self._record, message.id, outcome, detail, started)

    async def _hand_over(self, m: repo.MessageRecord) -> tuple[AttemptOutcome, str]:
        try:
            content = self._content(m)
        except SealError as exc:
            return AttemptOutcome.refused(str(exc)), str(exc)
        envelope = Envelope(
            mail_from=self.config.mail_from,
            recipient=m.recipient,
            recipient_name=m.recipient_name,
            message_id_header=m.message_id_header,
            date=m.created_at,
            language=m.language,
            reference=m.reference,
            reply_to=self.config.reply_to,
            auto_generated=m.auto_generated,
        )
        email = compose(envelope, content)
        try:
            detail = await self.transport.send(email, plain_address(self.config.mail_from), m.recipient)
        except DeliveryError as exc:
            if exc.permanent:
                return AttemptOutcome.refused(exc.detail), exc.detail
            return AttemptOutcome.temporary(exc.detail), exc.detail
        return AttemptOutcome.ok(), detail

    def _content(self, m: repo.MessageRecord) -> Rendered:
        if not m.has_secrets:
            return Rendered(m.subject, m.body_text, m.body_html)
        if m.sealed_content is None:
            raise SealError("the secret content was wiped before delivery")
        return self.box.open(m.sealed_content, m.id)

    def _record(
        self, session: Session, message_id: str, outcome: AttemptOutcome, detail: str, started: datetime
    ) -> None:
        current = repo.get_message(session, message_id, for_update=True)
        if current is None or current.delivery.status not in PENDING:
            # Cancelled (or recorded by another worker whose lease overlapped) meanwhile.
            log.info("message %s: attempt finished after it left the queue (%s)", message_id, detail)
            return
        now = self.clock.now()
        before = current.delivery.status
        transition = current.delivery.record_attempt(outcome, now, self.policy)
        after = current.delivery.status
        repo.save_delivery(session, current, now, wipe_secrets=after not in PENDING)
        repo.record_attempt_row(
            session,
            current.id,
            started,
            now,
            "DELIVERED"
            if outcome.delivered
            else "PERMANENT_FAILURE"
            if outcome.permanent
            else "TEMPORARY_FAILURE",
            detail,
            before,
            after,
            transition.value,
        )
        if transition is Transition.DELIVERED:
            log.info("message %s sent to patron %s (%s)", current.id, current.patron_id, detail)
            self._after_delivery(session, current)
        elif after is MessageStatus.FAILED:
            log.error(
                "message %s failed for good after %d attempt(s): %s",
                current.id,
                current.delivery.attempts,
                outcome.error,
            )
        else:
            log.warning(
                "message %s attempt %d failed, retry at %s: %s",
                current.id,
                current.delivery.attempts,
                current.delivery.next_attempt_at,
                outcome.error,
            )

    def _after_delivery(self, session: Session, m: repo.MessageRecord) -> None:
        kind, _, reservation_id = m.reference.partition(":")
        if kind != "reservation" or not reservation_id:
            return
        if m.template_key in NOT_A_CALL:
            return  # a reminder or an expiry notice is not "the patron was told it is ready"
        assert m.delivery.sent_at is not None
        enqueue(
            session,
            self.outbox,
            PATRON_NOTIFIED_TOPIC,
            f"notify-delivered:{m.id}",
            {
                "reservation_id": reservation_id,
                "notified_at": m.delivery.sent_at.isoformat(),
                "message_id": m.id,
            },
            now=self.clock.now(),
        )
        self.on_outbox()
