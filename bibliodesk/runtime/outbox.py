"""The transactional outbox: side effects written in the same transaction as the state change.

``enqueue(session, topic, key, payload)`` inside a use case's transaction; the ``OutboxRelay`` of
the service delivers each row by calling the handler registered for its topic, with the row's key
as the idempotency key (handlers pass it on as the peer's ``request_id``). Delivery is
at-least-once: a crash between the peer's answer and marking the row delivered re-delivers it, and
the idempotent peer changes nothing twice. Rows are claimed with a lease, so several replicas (or a
relay killed mid-delivery) never lose a row. Secrets in payloads (any key starting with
``secret``) are wiped once the row is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import grpc
from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .clock import Clock
from .db import Database
from .types import BigIntPK, UtcDateTime

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], str], Awaitable[None]]

_PERMANENT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
}


class PermanentFailure(Exception):
    """The side effect can never succeed (the peer refused it for good): stop retrying."""


def add_runtime_tables(metadata: MetaData) -> tuple[Table, Table]:
    """Adds the outbox and idempotency tables to a service's metadata (and so to its migrations)."""
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigIntPK, primary_key=True, autoincrement=True),
        Column("topic", String(100), nullable=False),
        Column("key", String(300), nullable=False, unique=True),
        Column("payload", Text, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("available_at", UtcDateTime, nullable=False),
        Column("locked_until", UtcDateTime, nullable=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text, nullable=True),
        Column("delivered_at", UtcDateTime, nullable=True),
        Column("dead", Boolean, nullable=False, default=False),
        Index("ix_outbox_pending", "delivered_at", "dead", "available_at"),
    )
    idempotency = Table(
        "idempotency_keys",
        metadata,
        Column("key", String(300), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("response", LargeBinary, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
    )
    return outbox, idempotency


def enqueue(
    session: Session,
    table: Table,
    topic: str,
    key: str,
    payload: dict[str, Any],
    *,
    now: datetime,
    delay: timedelta | None = None,
) -> bool:
    """Writes a side effect in the caller's transaction (``table`` is the service's outbox table).
    Returns False when ``key`` already exists: the same effect was already recorded, nothing is
    written twice. One statement: INSERT … ON CONFLICT (key) DO NOTHING (SQLite and PostgreSQL),
    so a concurrent writer of the same key neither fails nor needs a savepoint."""
    statement = _insert_new(table, session.get_bind().dialect.name)
    result = session.execute(
        statement,
        {
            "topic": topic,
            "key": key,
            "payload": json.dumps(payload, ensure_ascii=False),
            "created_at": now,
            "available_at": now + (delay or timedelta()),
            "attempts": 0,
            "dead": False,
        },
    )
    return result.first() is not None  # the new row's id; nothing when the key existed


@functools.cache
def _insert_new(table: Table, dialect: str) -> Any:
    """The outbox INSERT that skips an existing key, built once per table and dialect."""
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return make(table).on_conflict_do_nothing(index_elements=[table.c.key]).returning(table.c.id)


def redact(payload: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key.startswith("secret"):
            out[key] = {k: "[redacted]" for k in value} if isinstance(value, dict) else "[redacted]"
        elif isinstance(value, dict):
            out[key] = redact(value)
        else:
            out[key] = value
    return out


def is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, PermanentFailure):
        return True
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() in _PERMANENT_CODES
    return False


class OutboxRelay:
    """Delivers a service's outbox rows to their handlers with retries and capped exponential backoff."""

    def __init__(
        self,
        db: Database,
        table: Table,
        clock: Clock,
        *,
        lease: timedelta = timedelta(seconds=60),
        batch_size: int = 20,
        base_backoff: float = 0.5,
        max_backoff: float = 300.0,
        poll_interval: float = 1.0,
        handler_timeout: float = 30.0,
    ) -> None:
        self.db = db
        self.table = table
        self.clock = clock
        self.handlers: dict[str, Handler] = {}
        self.lease = lease
        self.batch_size = batch_size
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.poll_interval = poll_interval
        self.handler_timeout = handler_timeout
        self._wake = asyncio.Event()
        self._stopping = False

    def register(self, topic: str, handler: Handler) -> None:
        self.handlers[topic] = handler

    def wake(self) -> None:
        """Call after a commit that enqueued rows, to deliver them now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                delivered = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay pass failed")
                delivered = 0
            if delivered == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run_once(self) -> int:
        """One pass: claim due rows, deliver them, record the outcome. Returns rows attempted."""
        rows = await self.db.write(self._claim)
        if not rows:
            return 0
        outcomes = await asyncio.gather(*(self._deliver(row) for row in rows))
        delivered = [row for row, ok in zip(rows, outcomes, strict=True) if ok]
        if delivered:  # one transaction for the pass, not one per row
            await self.db.write(self._delivered, delivered)
        return len(rows)

    async def drain(self, *, max_passes: int = 50) -> None:
        """Delivers everything currently due (tests and shutdown)."""
        for _ in range(max_passes):
            if await self.run_once() == 0:
                return

    def _claim(self, session: Session) -> list[dict[str, Any]]:
        t = self.table
        now = self.clock.now()
        query = (
            select(t.c.id, t.c.topic, t.c.key, t.c.payload, t.c.attempts)
            .where(t.c.delivered_at.is_(None), t.c.dead.is_(False), t.c.available_at <= now)
            .where((t.c.locked_until.is_(None)) | (t.c.locked_until < now))
            .order_by(t.c.id)
            .limit(self.batch_size)
        )
        if self.db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = [dict(r._mapping) for r in session.execute(query)]
        if rows:
            session.execute(
                update(t).where(t.c.id.in_([r["id"] for r in rows])).values(locked_until=now + self.lease)
            )
        return rows

    async def _deliver(self, row: dict[str, Any]) -> bool:
        """Runs the row's handler; a failure is recorded (backoff) and False returned."""
        handler = self.handlers.get(row["topic"])
        try:
            if handler is None:
                raise RuntimeError(f"no outbox handler for topic {row['topic']!r}")
            payload = json.loads(row["payload"])
            await asyncio.wait_for(handler(payload, row["key"]), timeout=self.handler_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            permanent = is_permanent(exc)
            error = _describe(exc)
            attempts = row["attempts"] + 1
            delay = min(self.max_backoff, self.base_backoff * (2 ** (attempts - 1)))
            delay *= random.uniform(0.8, 1.2)
            level = logging.ERROR if permanent else logging.WARNING
            log.log(
                level, "outbox %s key=%s attempt %d failed: %s", row["topic"], row["key"], attempts, error
            )
            await self.db.write(self._failed, row["id"], attempts, error, delay, permanent)
            return False
        return True

    def _delivered(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """Marks rows delivered and wipes their secrets (the payload is the one claimed: a row's
        payload never changes before delivery)."""
        t = self.table
        now = self.clock.now()
        statement = (
            update(t)
            .where(t.c.id == bindparam("b_id"))
            .values(delivered_at=bindparam("b_at"), locked_until=None, payload=bindparam("b_payload"))
        )
        session.execute(
            statement,
            [
                {
                    "b_id": row["id"],
                    "b_at": now,
                    "b_payload": json.dumps(redact(json.loads(row["payload"])), ensure_ascii=False),
                }
                for row in rows
            ],
        )

    def _failed(
        self, session: Session, row_id: int, attempts: int, error: str, delay: float, permanent: bool
    ) -> None:
        t = self.table
        session.execute(
            update(t)
            .where(t.c.id == row_id)
            .values(
                attempts=attempts,
                last_error=error[:2000],
                locked_until=None,
                dead=permanent,
                available_at=self.clock.now() + timedelta(seconds=delay),
            )
        )

    def purge_delivered(self, session: Session, older_than: timedelta = timedelta(days=7)) -> int:
        t = self.table
        result = session.execute(
            delete(t).where(t.c.delivered_at.is_not(None), t.c.delivered_at < self.clock.now() - older_than)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def pending_count(self, session: Session) -> int:
        from sqlalchemy import func

        t = self.table
        return int(
            session.execute(
                select(func.count()).select_from(t).where(t.c.delivered_at.is_(None), t.c.dead.is_(False))
            ).scalar_one()
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
