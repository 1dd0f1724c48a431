"""Bulk-loads the generated library straight into each service's own tables.

The schema comes from the services themselves (``bibliodesk up`` runs their migrations once before
the load); the column lists come from their ``store/tables.py`` metadata, so a renamed column
fails loudly here instead of loading garbage. SQLite: ``executemany`` in large transactions with
``synchronous=OFF``; PostgreSQL: ``COPY … FROM STDIN``, then ``ANALYZE``. The three databases are
loaded by three processes at once, each reporting its progress to the parent's progress bars.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import resource
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Boolean, Date

from bibliodesk.runtime.types import UtcDateTime

from .dataset import CATEGORIES, LOGIN_PASSWORD, Layout, rid
from .system import pg_libpq_url

BATCH = 20_000


class Writer:
    """Writes row tuples into one table of one service's database, fast."""

    def __init__(self, url: str, schema: str, report: Callable[[str, int], None]) -> None:
        self.url = url
        self.schema = schema
        self.report = report
        self.is_pg = url.startswith("postgresql")
        if self.is_pg:
            import psycopg

            self.pg = psycopg.connect(pg_libpq_url(url), autocommit=False)
            self.pg.execute(f'SET search_path TO "{schema}"')
            self.pg.execute("SET synchronous_commit TO off")
        else:
            self.lite = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
            self.lite.execute("PRAGMA synchronous=OFF")
            self.lite.execute("PRAGMA cache_size=-200000")
            self.lite.execute("PRAGMA foreign_keys=OFF")

    def write(self, table: Any, columns: list[str], rows: Iterable[tuple], label: str) -> int:
        known = {c.name for c in table.columns}
        missing = [c for c in columns if c not in known]
        if missing:
            raise RuntimeError(f"{table.name}: no column(s) {missing}: the service's schema changed")
        n = 0
        if self.is_pg:
            cols = ", ".join(f'"{c}"' for c in columns)
            with self.pg.cursor() as cur, cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
                    n += 1
                    if n % BATCH == 0:
                        self.report(label, BATCH)
            self.pg.commit()
            # Statistics now, before the tables that reference this one are copied: their foreign
            # key checks are planned from them, and a table created empty says "0 rows" (each
            # check then scans the whole table: a 2M-row COPY took over 10 minutes instead of 1).
            self.pg.execute(f'ANALYZE "{table.name}"')
            self.pg.commit()
        else:
            convert = _lite_converters(table, columns)
            sql = (
                f'INSERT INTO "{table.name}" ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})'
            )
            batch: list[Any] = []
            self.lite.execute("BEGIN")
            for row in rows:
                if convert:
                    values = list(row)
                    for k, fn in convert:
                        if values[k] is not None:
                            values[k] = fn(values[k])
                    batch.append(values)
                else:
                    batch.append(row)
                if len(batch) >= BATCH:
                    self.lite.executemany(sql, batch)
                    n += len(batch)
                    self.report(label, len(batch))
                    batch.clear()
            if batch:
                self.lite.executemany(sql, batch)
                n += len(batch)
            self.lite.execute("COMMIT")
        self.report(label, n % BATCH)
        return n

    def finish(self) -> None:
        if self.is_pg:
            self.pg.autocommit = True
            self.pg.execute("ANALYZE")
            self.pg.close()
        else:
            self.lite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.lite.close()


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _lite_converters(table: Any, columns: list[str]) -> list[tuple[int, Callable[[Any], Any]]]:
    """SQLAlchemy's SQLite storage for the columns that need it: naive UTC
    'YYYY-MM-DD HH:MM:SS.ffffff' timestamps, ISO dates, booleans 0/1."""
    out: list[tuple[int, Callable[[Any], Any]]] = []
    for k, name in enumerate(columns):
        kind = table.c[name].type
        if isinstance(kind, UtcDateTime):
            out.append((k, _stamp))
        elif isinstance(kind, Boolean):
            out.append((k, int))
        elif isinstance(kind, Date):
            out.append((k, date.isoformat))
    return out


# --- patrons ---------------------------------------------------------------------------------------

PATRON_COLUMNS = [
    "id",
    "origin",
    "status",
    "given_name",
    "surname",
    "search_key",
    "given_key",
    "birth_date",
    "birth_place",
    "street",
    "postal_code",
    "city",
    "province",
    "country_code",
    "email",
    "email_key",
    "phone",
    "home_branch",
    "language",
    "document_type",
    "document_number",
    "zone",
    "nationality",
    "category_code",
    "card_barcode",
    "rfid_uid",
    "enrollment_date",
    "enrollment_expiry_date",
    "privacy_consent_at",
    "created_at",
    "updated_at",
    "version",
]


def password_hash(memory_kib: int, time_cost: int) -> str:
    """The argon2id hash of the bench accounts' password, with the server's cost."""
    import argon2

    hasher = argon2.PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=argon2.Type.ID
    )
    return hasher.hash(LOGIN_PASSWORD)


def load_patrons(
    layout: Layout, url: str, schema: str, report: Callable[[str, int], None], pw_hash: str
) -> None:
    from services.patrons.store import tables as t

    w = Writer(url, schema, report)
    now = layout.now
    w.write(
        t.categories,
        [
            "code",
            "name",
            "loan_limit",
            "reservation_limit",
            "enrollment_period_months",
            "pickup_period_days",
            "active",
            "version",
            "created_at",
            "updated_at",
        ],
        [(c, n, ll, rl, em, pd, True, 1, now, now) for c, n, ll, rl, em, pd in CATEGORIES],
        "patron categories",
    )
    w.write(t.patrons, PATRON_COLUMNS, (layout.patron_row(i) for i in range(layout.patrons)), "patrons")
    w.write(
        t.accounts,
        [
            "id",
            "kind",
            "subject_id",
            "username",
            "password_hash",
            "state",
            "issue_id",
            "temporary_expires_at",
            "defined_at",
            "last_login_at",
            "token_version",
            "created_at",
            "updated_at",
        ],
        (
            (
                rid("account", k),
                "patron",
                layout.patron_id(layout.login_patron(k)),
                layout.login_username(k),
                pw_hash,
                "PATRON_DEFINED",
                None,
                None,
                now - timedelta(days=30),
                None,
                1,
                now,
                now,
            )
            for k in range(layout.logins)
        ),
        "patron web accounts",
    )
    w.finish()


# --- reservations (items, loans, reservations) ----------------------------------------------------

ITEM_COLUMNS = [
    "barcode",
    "title",
    "author",
    "branch",
    "call_number",
    "state",
    "state_reason",
    "set_aside_for",
    "version",
    "created_at",
    "updated_at",
]
LOAN_COLUMNS = [
    "id",
    "item_barcode",
    "patron_id",
    "patron_card_barcode",
    "checked_out_at",
    "due_date",
    "branch",
    "reservation_id",
    "returned_at",
    "returned_branch",
]
RES_COLUMNS = [
    "id",
    "patron_id",
    "item_barcode",
    "pickup_branch",
    "origin",
    "status",
    "status_reason",
    "queue_seq",
    "queue_position",
    "created_at",
    "ready_at",
    "called_at",
    "notified_at",
    "pickup_deadline",
    "auto_expire",
    "fetched_at",
    "closed_at",
    "note",
    "patron_card_barcode",
    "pickup_period_days",
    "version",
]
HISTORY_COLUMNS = ["reservation_id", "from_status", "to_status", "reason", "at", "actor"]


def _loan_of_item(layout: Layout, j: int) -> int | None:
    """The borrower (patron index) of item ``j`` when it is on loan, else None."""
    p = layout.pool
    if j < p:
        return j  # V4 borrowers
    if 2 * p <= j < 3 * p:
        return layout.ordinary_borrower(j) if j % 2 == 0 else None  # R5: half on loan
    if 3 * p <= j < layout.first_shelf_item:
        return layout.ordinary_borrower(j)
    return None


def load_reservations(layout: Layout, url: str, schema: str, report: Callable[[str, int], None]) -> None:
    from services.reservations.store import tables as t

    w = Writer(url, schema, report)
    now, p = layout.now, layout.pool
    seq = bytearray(layout.items)  # queue_seq counter per item (small numbers)
    seq_big: dict[int, int] = {}

    def next_seq(j: int) -> int:
        if seq[j] < 250:
            seq[j] += 1
            return seq[j]
        seq_big[j] = seq_big.get(j, 250) + 1
        return seq_big[j]

    def items() -> Iterator[tuple]:
        for j in range(layout.items):
            title, author = layout.item_title(j)
            created = now - timedelta(days=400 + j % 2000)
            if p <= j < 2 * p:
                state, reason, aside = "SET_ASIDE", "RETURNED_FOR_RESERVATION", rid("reservation", j)
            elif _loan_of_item(layout, j) is not None:
                state, reason, aside = "ON_LOAN", "CHECKED_OUT", None
            else:
                state, reason, aside = "ON_SHELF", "IMPORTED", None
            yield (
                layout.item_barcode(j),
                title,
                author,
                layout.item_branch(j),
                f"853.{j % 1000:03d}",
                state,
                reason,
                aside,
                1,
                created,
                created,
            )

    w.write(t.items, ITEM_COLUMNS, items(), "items")

    def loans() -> Iterator[tuple]:
        for j in range(layout.first_shelf_item):
            borrower = _loan_of_item(layout, j)
            if borrower is None:
                continue
            out = now - timedelta(days=1 + j % 25, hours=j % 9)
            yield (
                rid("loan", j),
                layout.item_barcode(j),
                layout.patron_id(borrower),
                layout.patron_card(borrower),
                out,
                (out + timedelta(days=30)).date(),
                layout.item_branch(j),
                None,
                None,
                "",
            )

    w.write(t.loans, LOAN_COLUMNS, loans(), "open loans")

    def past() -> Iterator[tuple]:
        for r in range(layout.requests):
            patron, item, status, created = layout.past_request(r)
            if status != "ADVANCED":
                continue
            if not layout.patron_enrolled(patron):
                patron -= 1
            fulfilled = r % 7 != 0
            closed = created + timedelta(days=2 + r % 6)
            yield (
                rid("past_reservation", r),
                layout.patron_id(patron),
                layout.item_barcode(item),
                layout.item_branch(item),
                "WEB",
                "FULFILLED" if fulfilled else "EXPIRED",
                "CHECKED_OUT" if fulfilled else "PICKUP_DEADLINE_PASSED",
                next_seq(item),
                None,
                created,
                created + timedelta(days=1),
                None,
                created + timedelta(days=1),
                created + timedelta(days=8),
                True,
                created + timedelta(hours=2),
                closed,
                "",
                layout.patron_card(patron),
                7,
                3,
            )

    w.write(t.reservations, RES_COLUMNS, past(), "past reservations")

    current: list[tuple[str, str, str]] = []  # (reservation id, status, reason) for their history

    def live() -> Iterator[tuple]:
        for k in range(p):  # V4 queues: first (and for even k second) in line for item k
            for pos, patron in ((1, p + k), (2, 2 * p + k // 2)):
                if pos == 2 and k % 2:
                    continue
                res_id = rid("reservation", k * 2 + pos - 1 + 10 * layout.items)
                created = now - timedelta(days=3, minutes=pos)
                current.append((res_id, "WAITING_FOR_RETURN", "ITEM_ON_LOAN"))
                yield (
                    res_id,
                    layout.patron_id(patron),
                    layout.item_barcode(k),
                    layout.item_branch(k),
                    "WEB" if k % 3 else "DESK",
                    "WAITING_FOR_RETURN",
                    "ITEM_ON_LOAN",
                    next_seq(k),
                    pos,
                    created,
                    None,
                    None,
                    None,
                    None,
                    True,
                    None,
                    None,
                    "",
                    layout.patron_card(patron),
                    7,
                    1,
                )
        for k in range(p):  # V6: set aside for patron 3p + k, who was told yesterday
            j, patron = p + k, 3 * p + k
            res_id = rid("reservation", j)
            created = now - timedelta(days=4)
            told = now - timedelta(days=1)
            current.append((res_id, "READY_FOR_PICKUP", "ITEM_RETURNED"))
            yield (
                res_id,
                layout.patron_id(patron),
                layout.item_barcode(j),
                layout.item_branch(j),
                "WEB" if k % 3 else "DESK",
                "READY_FOR_PICKUP",
                "ITEM_RETURNED",
                next_seq(j),
                None,
                created,
                told,
                None,
                told,
                told + timedelta(days=7),
                True,
                told,
                None,
                "",
                layout.patron_card(patron),
                7,
                2,
            )

    w.write(t.reservations, RES_COLUMNS, live(), "live reservations")
    w.write(
        t.reservation_history,
        HISTORY_COLUMNS,
        (
            (res_id, None, status, reason, now - timedelta(days=3), "staff:bench")
            for res_id, status, reason in current
        ),
        "reservation history",
    )
    w.finish()


# --- requests (the inbox) ----------------------------------------------------------------------

REQ_COLUMNS = [
    "id",
    "patron_id",
    "patron_display_name",
    "patron_card_barcode",
    "item_barcode",
    "item_title",
    "item_author",
    "pickup_branch",
    "note",
    "status",
    "created_at",
    "updated_at",
    "version",
    "advance_mode",
    "advance_key",
    "advanced_by",
    "advance_started_at",
    "advanced_at",
    "reservation_id",
    "cut_reason",
    "cut_explanation",
    "cut_by",
    "cut_at",
    "withdrawn_at",
    "notice_sent_at",
    "notice_sent_by",
    "last_refusal",
]
EVENT_COLUMNS = ["request_id", "kind", "from_status", "to_status", "reason", "actor", "at", "detail"]


def load_requests(layout: Layout, url: str, schema: str, report: Callable[[str, int], None]) -> None:
    from services.requests.store import tables as t

    w = Writer(url, schema, report)
    p = layout.pool

    def row(req_id: str, patron: int, item: int, status: str, created: datetime, r: int) -> tuple:
        if not layout.patron_enrolled(patron):
            patron -= 1
        surname, given = layout.patron_name(patron)
        title, author = layout.item_title(item)
        done = created + timedelta(hours=3 + r % 40)
        adv = status == "ADVANCED"
        cut = status == "CUT"
        noticed = cut or (adv and r % 4 == 0)
        return (
            req_id,
            layout.patron_id(patron),
            f"{surname} {given}",
            layout.patron_card(patron),
            layout.item_barcode(item),
            title,
            author,
            layout.item_branch(item),
            "",
            status,
            created,
            done if status != "PENDING" else created,
            2 if status != "PENDING" else 1,
            "RESERVE" if adv else None,
            f"bench-advance-{r}" if adv else None,
            "staff:bench" if adv else "",
            done if adv else None,
            done if adv else None,
            rid("past_reservation", r) if adv else "",
            "ITEM_MISSING" if cut else None,
            "",
            "staff:bench" if cut else "",
            done if cut else None,
            done if status == "WITHDRAWN" else None,
            done if noticed else None,
            "staff:bench" if noticed else "",
            "",
        )

    def requests() -> Iterator[tuple]:
        for r in range(layout.requests):
            patron, item, status, created = layout.past_request(r)
            yield row(rid("request", r), patron, item, status, created, r)
        for k in range(p):  # R5: pending, the newest made today
            yield row(layout.r5_request(k), 4 * p + k, 2 * p + k, "PENDING", layout.r5_created(k), k)

    w.write(t.inbox_requests, REQ_COLUMNS, requests(), "inbox requests")

    final = {
        "ADVANCED": ("RESERVATION_CREATED", "ADVANCING", "the reservation was created"),
        "CUT": ("CUT", "PENDING", "cut by the desk"),
        "WITHDRAWN": ("WITHDRAWN", "PENDING", "withdrawn by the patron"),
    }

    def events() -> Iterator[tuple]:
        for r in range(layout.requests):
            patron, _item, status, created = layout.past_request(r)
            req_id = rid("request", r)
            yield (
                req_id,
                "SUBMITTED",
                None,
                "PENDING",
                "the patron asked for the item",
                f"patron:{patron}",
                created,
                "",
            )
            kind, source, reason = final[status]
            yield (
                req_id,
                kind,
                source,
                status,
                reason,
                "staff:bench",
                created + timedelta(hours=3 + r % 40),
                "",
            )
        for k in range(p):
            yield (
                layout.r5_request(k),
                "SUBMITTED",
                None,
                "PENDING",
                "the patron asked for the item",
                f"patron:{4 * p + k}",
                layout.r5_created(k),
                "",
            )

    w.write(t.inbox_events, EVENT_COLUMNS, events(), "inbox events")
    w.finish()


# --- the parallel load with progress bars -----------------------------------------------------


def expected_rows(layout: Layout) -> dict[str, int]:
    advanced = sum(1 for r in range(0, layout.requests, 97) if layout.past_request(r)[2] == "ADVANCED")
    sampled = len(range(0, layout.requests, 97)) or 1
    p = layout.pool
    return {
        "patron categories": len(CATEGORIES),
        "patrons": layout.patrons,
        "patron web accounts": layout.logins,
        "items": layout.items,
        "open loans": sum(1 for j in range(layout.first_shelf_item) if _loan_of_item(layout, j) is not None),
        "past reservations": round(layout.requests * advanced / sampled),
        "live reservations": p + (p + 1) // 2 + p,
        "reservation history": p + (p + 1) // 2 + p,
        "inbox requests": layout.requests + p,
        "inbox events": 2 * layout.requests + p,
    }


def _worker(target: str, layout: Layout, url: str, schema: str, q: Any, pw_hash: str) -> None:
    def report(label: str, n: int) -> None:
        if n:
            q.put((label, n))

    try:
        if target == "patrons":
            load_patrons(layout, url, schema, report, pw_hash)
        elif target == "reservations":
            load_reservations(layout, url, schema, report)
        else:
            load_requests(layout, url, schema, report)
        q.put(("__done__", target))
    except BaseException as exc:  # reported to the parent, which fails the run
        q.put(("__error__", f"{target}: {type(exc).__name__}: {exc}"))
        raise


def load_all(
    layout: Layout,
    urls: dict[str, str],
    schemas: dict[str, str],
    console: Console,
    pw_hash: str,
) -> dict[str, Any]:
    """Loads patrons, reservations and requests in three processes; returns rows and seconds."""
    layout.check()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    targets = ("patrons", "reservations", "requests")
    procs = [
        ctx.Process(target=_worker, args=(name, layout, urls[name], schemas[name], q, pw_hash), daemon=True)
        for name in targets
    ]
    t0 = time.perf_counter()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = usage0.ru_utime + usage0.ru_stime
    totals = expected_rows(layout)
    done: set[str] = set()
    loaded = dict.fromkeys(totals, 0)
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks = {label: progress.add_task(label, total=total) for label, total in totals.items()}
        for proc in procs:
            proc.start()
        while len(done) < len(targets):
            try:
                label, n = q.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError("a loader process died") from None
                continue
            if label == "__done__":
                done.add(n)
            elif label == "__error__":
                for proc in procs:
                    proc.terminate()
                raise RuntimeError(f"bulk load failed: {n}")
            else:
                before = loaded.get(label, 0)
                loaded[label] = before + n
                progress.update(tasks[label], completed=loaded[label])
                tenth = max(1, totals.get(label, 1) // 10)
                if not console.is_terminal and before // tenth != loaded[label] // tenth:
                    # no live bars in a log file: a line every 10 %
                    console.print(
                        f"  {label}: {loaded[label]:,}/{totals.get(label, 0):,} rows, "
                        f"{time.perf_counter() - t0:.0f} s"
                    )
        for label, total in loaded.items():
            progress.update(tasks[label], completed=total, total=max(total, 1))
    for proc in procs:
        proc.join()
    seconds = time.perf_counter() - t0
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = used.ru_utime + used.ru_stime - cpu0
    return {
        "seconds": round(seconds, 1),
        "loader_cpu_seconds": round(cpu, 1),
        "rows": loaded,
        "rows_total": sum(loaded.values()),
    }
