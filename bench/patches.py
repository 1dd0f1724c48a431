"""Proposed fixes, applied at start-up to the server process only, to measure them before the
owners change their code (``python -m bench.run --patch token-cache``). Nothing here is imported
by the services; the bench's own runs are unpatched unless asked. ``sqlite-analyze``,
``sqlite-cache`` and ``token-cache`` were then adopted by the runtime (commit 21a46d6): on a current
checkout they change nothing; they remain to measure an older one.

* ``sqlite-analyze`` (FINDINGS.md F5): ``PRAGMA analysis_limit=400; ANALYZE`` on every SQLite
  database before the start,
  i.e. what ``PRAGMA optimize`` at start-up would give the query planner (applied by ``bench.run``
  to the data, so it stays in a kept library).
* ``sqlite-cache`` (FINDINGS.md F7): every SQLite connection of the server gets
  ``PRAGMA cache_size=-32768`` (32 MiB instead of 2 MiB) and ``PRAGMA mmap_size=268435456``
  (pages read through the memory map instead of one ``pread`` system call each).
* ``light-item-lock`` (FINDINGS.md F9): reservations' ``lock_item`` locks the item row only
  instead of loading the copy's whole circulation (which the use case then loads again).
* ``token-cache`` (FINDINGS.md F3): ``TokenVerifier.verify`` remembers the principal of each token
  it has verified (bounded, until the token expires) instead of checking the Ed25519 signature on
  every call.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

CACHE_SIZE = 10_000


def token_cache() -> None:
    from bibliodesk.runtime import auth

    original = auth.TokenVerifier.verify

    async def verify(self: Any, token: str) -> Any:
        cache: dict[str, Any] = self.__dict__.setdefault("_verified", {})
        principal = cache.get(token)
        now = self.now() if self.now is not None else datetime.now(UTC)
        if principal is not None and principal.expires_at is not None and principal.expires_at > now:
            return principal
        principal = await original(self, token)
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[token] = principal
        return principal

    auth.TokenVerifier.verify = verify  # type: ignore[method-assign]


def sqlite_cache() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA cache_size=-32768")
            cursor.execute("PRAGMA mmap_size=268435456")
            cursor.close()


def light_item_lock() -> None:
    """FINDINGS.md F9: lock the copy's row only, instead of loading its whole circulation twice."""
    from sqlalchemy import select

    from bibliodesk.runtime.db import lock_for_update
    from services.reservations.app import use_cases
    from services.reservations.store.tables import items

    def lock_item(session: Any, barcode: str) -> None:
        session.execute(
            lock_for_update(select(items.c.barcode).where(items.c.barcode == barcode), session)
        ).first()

    use_cases.lock_item = lock_item


PATCHES = {"token-cache": token_cache, "sqlite-cache": sqlite_cache, "light-item-lock": light_item_lock}
#: patches applied to the data by bench.run before the start, not in the server process
DATA_PATCHES = {"sqlite-analyze"}


def sqlite_analyze(paths: list[str]) -> None:
    import sqlite3

    for path in paths:
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA analysis_limit=400")  # approximate statistics: milliseconds at 1M rows
            conn.execute("ANALYZE")


def apply(names: str) -> list[str]:
    applied = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name in DATA_PATCHES:
            continue
        if name not in PATCHES:
            raise SystemExit(f"unknown patch {name!r}; known: {', '.join(PATCHES)}")
        PATCHES[name]()
        applied.append(name)
    return applied
