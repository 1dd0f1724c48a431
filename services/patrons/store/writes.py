"""One write transaction, with unique-constraint races turned into the domain's answers.

The use cases check uniqueness before writing (a clear error in the common case); on PostgreSQL two
concurrent transactions can both pass that check, and the database's unique constraint stops the
second. That must reach the caller as the same ALREADY_EXISTS the check would have given, never as
INTERNAL. A race on a key that is "first writer wins, then read" (idempotency records, log-in
throttles, rate events) is retried once: the retry sees the winner's row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from bibliodesk.runtime.db import Database
from bibliodesk.runtime.errors import AlreadyExists

T = TypeVar("T")

#: constraint (PostgreSQL name or SQLite "table.column") -> the domain error it means
_CONFLICTS: dict[tuple[str, ...], tuple[str, str]] = {
    ("uq_patrons_card_barcode", "patrons.card_barcode"): (
        "CARD_BARCODE_IN_USE",
        "this card barcode belongs to another patron",
    ),
    ("uq_patrons_rfid_uid", "patrons.rfid_uid"): (
        "RFID_UID_IN_USE",
        "this RFID card belongs to another patron",
    ),
    ("uq_accounts_username", "accounts.username"): ("USERNAME_TAKEN", "this username is already taken"),
    ("pk_patron_categories", "patron_categories.code"): ("CATEGORY_EXISTS", "this category already exists"),
}
_RETRY_ONCE = (
    "pk_idempotency_keys",
    "idempotency_keys.key",
    "pk_login_throttle",
    "login_throttle.username_key",
    "uq_accounts_kind",
    "accounts.kind",
)


def _conflict(exc: IntegrityError) -> tuple[str, str] | None:
    text = str(exc.orig)
    for names, answer in _CONFLICTS.items():
        if any(name in text for name in names):
            return answer
    return None


async def write(db: Database, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    for attempt in (1, 2):
        try:
            return await db.write(fn, *args, **kwargs)
        except IntegrityError as exc:
            answer = _conflict(exc)
            if answer is not None:
                raise AlreadyExists(*answer) from None
            if attempt == 1 and any(name in str(exc.orig) for name in _RETRY_ONCE):
                continue
            raise
    raise AssertionError("unreachable")
