"""The database of one service: SQLite (embedded default) or PostgreSQL by URL.

Use cases are plain synchronous functions taking a SQLAlchemy ``Session``; the servicer runs them
with ``await db.write(fn, ...)`` (one transaction, committed or rolled back as a whole) or
``await db.read(fn, ...)``. They run on worker threads so the gRPC event loop never blocks.

SQLite: WAL, foreign keys on, writes serialised on one thread with ``BEGIN IMMEDIATE`` (no lock
upgrades, no SQLITE_BUSY between our own writers). PostgreSQL: writes READ COMMITTED (take row
locks with ``lock_for_update(select(...))``; serialization failures and deadlocks are retried);
reads REPEATABLE READ READ ONLY, so a multi-query read sees one snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Select, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_RETRYABLE_PG = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def normalize_url(url: str) -> str:
    """Accepts postgres:// and postgresql:// and picks the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Database:
    def __init__(self, url: str, *, name: str = "db", pool_size: int = 8, schema: str = "") -> None:
        self.url = normalize_url(url)
        self.name = name
        self.dialect = make_url(self.url).get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        self.schema = schema
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:":
                from pathlib import Path

                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = self._sqlite_engine(immediate=True)
            self.read_engine = self._sqlite_engine(immediate=False)
            write_threads = 1
        else:
            connect_args: dict[str, Any] = {"connect_timeout": 5}
            if schema:
                connect_args["options"] = f"-csearch_path={schema}"
            self.write_engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=4,
                pool_pre_ping=True,
                connect_args=connect_args,
            )
            # Reads see one snapshot across all their queries, and can never write.
            self.read_engine = self.write_engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            write_threads = pool_size
        self.engine = self.write_engine
        self._write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write_pool = ThreadPoolExecutor(write_threads, thread_name_prefix=f"{name}-write")
        self._read_pool = ThreadPoolExecutor(4, thread_name_prefix=f"{name}-read")

    def _sqlite_engine(self, *, immediate: bool) -> Engine:
        engine = create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=NullPool if ":memory:" in self.url else None,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA cache_size=-32768")  # 32 MiB of page cache per connection
            cursor.execute("PRAGMA mmap_size=268435456")  # reads through a 256 MiB map, not read()
            cursor.close()

        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine

    # --- synchronous API (use cases, migrations, tests) ---------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction: commit on success, roll back on any exception."""
        with self._write_sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only transaction."""
        with self._read_sessions() as session, session.begin():
            yield session

    def write_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        for attempt in range(5):
            try:
                with self.transaction() as session:
                    return fn(session, *args, **kwargs)
            except (DBAPIError, OperationalError) as exc:
                if not self._retryable(exc) or attempt == 4:
                    raise
                time.sleep(0.01 * (2**attempt))
        raise AssertionError("unreachable")

    def read_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.snapshot() as session:
            return fn(session, *args, **kwargs)

    def _retryable(self, exc: DBAPIError) -> bool:
        if self.is_sqlite:
            return "database is locked" in str(exc)
        code = getattr(getattr(exc, "orig", None), "sqlstate", None)
        return code in _RETRYABLE_PG

    # --- asynchronous API (servicers) ----------------------------------------------------------

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs ``fn(session, *args, **kwargs)`` in one write transaction on a worker thread."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self.write_sync, fn, *args, **kwargs)
        return await loop.run_in_executor(self._write_pool, _with_context(call))

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs ``fn(session, *args, **kwargs)`` in one read transaction on a worker thread."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self.read_sync, fn, *args, **kwargs)
        return await loop.run_in_executor(self._read_pool, _with_context(call))

    def optimize(self, *, full: bool = False) -> None:
        """SQLite: refresh the planner's statistics (without them it guesses, and at a library's
        size it guesses wrong). ``full`` at start-up (bounded by analysis_limit), else PRAGMA optimize."""
        if not self.is_sqlite:
            return  # PostgreSQL's autovacuum analyzes
        with self.write_engine.begin() as conn:  # committed: a rolled-back ANALYZE keeps nothing
            if full:
                conn.exec_driver_sql("PRAGMA analysis_limit=400")
                conn.exec_driver_sql("ANALYZE")
            else:
                conn.exec_driver_sql("PRAGMA optimize")

    def ping(self) -> None:
        with self.read_engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    async def wait_until_reachable(self, *, attempts: int = 60, first_delay: float = 0.2) -> None:
        """Start-up: retries the database with backoff instead of crashing (compose boots in any order)."""
        delay = first_delay
        for attempt in range(1, attempts + 1):
            try:
                await asyncio.get_running_loop().run_in_executor(self._read_pool, self.ping)
                return
            except Exception as exc:
                if attempt == attempts:
                    raise
                log.warning("database %s not reachable (%s); retrying in %.1fs", self.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def dispose(self) -> None:
        self._write_pool.shutdown(wait=True)
        self._read_pool.shutdown(wait=True)
        self.write_engine.dispose()
        if self.is_sqlite:
            self.read_engine.dispose()


def lock_for_update(statement: Select[Any], db_session: Session) -> Select[Any]:
    """Adds FOR UPDATE on PostgreSQL (SQLite writes are already serialised)."""
    if db_session.get_bind().dialect.name == "postgresql":
        return statement.with_for_update()
    return statement


def _with_context(call: Callable[[], T]) -> Callable[[], T]:
    """Carries context variables (request id, principal) onto the worker thread."""
    import contextvars

    ctx = contextvars.copy_context()
    return lambda: ctx.run(call)
