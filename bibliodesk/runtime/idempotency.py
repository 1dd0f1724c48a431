"""AIP-155 request idempotency: a retried mutation returns the first answer and changes nothing twice.

    response = idempotent(session, idem_table, "CreateReservation", request,
                          lambda: build_response(...), CreateReservationResponse, now=clock.now())

The stored answer is the serialized response message, keyed by method and ``request.request_id``,
written in the same transaction as the change itself. Reusing a request_id for a different request
is refused (INVALID_ARGUMENT, reason REQUEST_ID_REUSED). An empty request_id means "not retried":
no record is kept. Concurrent duplicates on PostgreSQL: the loser's transaction fails on the primary
key and ``Database.write`` is retried by the caller (see ``IdempotencyRace``).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from .errors import InvalidArgument

M = TypeVar("M", bound=Message)

MAX_REQUEST_ID = 200


def fingerprint(request: Message) -> str:
    copy = type(request)()
    copy.CopyFrom(request)
    if "request_id" in copy.DESCRIPTOR.fields_by_name:
        copy.ClearField("request_id")  # type: ignore[arg-type]
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def idempotent(
    session: Session,
    table: Table,
    method: str,
    request: Message,
    produce: Callable[[], M],
    response_type: type[M],
    *,
    now: datetime,
    request_id: str | None = None,
) -> M:
    if request_id is None:
        request_id = str(getattr(request, "request_id", ""))
    if not request_id:
        return produce()
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgument(field="request_id", description=f"must be at most {MAX_REQUEST_ID} characters")
    key = f"{method}:{request_id}"
    digest = fingerprint(request)
    row = session.execute(_lookup(table), {"key": key}).first()
    if row is not None:
        if row.fingerprint != digest:
            raise InvalidArgument(
                field="request_id",
                description="was already used for a different request",
                reason="REQUEST_ID_REUSED",
            )
        return response_type.FromString(row.response)
    response = produce()
    session.execute(
        insert(table),
        {"key": key, "fingerprint": digest, "response": response.SerializeToString(), "created_at": now},
    )
    return response


@functools.cache
def _lookup(table: Table) -> Any:
    """The stored answer's look-up, built once per table (bound at execution)."""
    return select(table.c.fingerprint, table.c.response).where(table.c.key == bindparam("key"))
