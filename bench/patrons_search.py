"""Desk search (P2) at scale: loads N patrons (default 1,000,000) into a real patrons database and
prints the search latency p50/p95/p99, measured through the real gRPC server and client.

    BIBLIODESK_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/patrons_search.py [--patrons 1000000] [--queries 2000] [--backend postgresql]

The patrons service runs in-process (its own schema, migrated by its Alembic history); the rows are
bulk-loaded with COPY on PostgreSQL (executemany on SQLite) with the same search keys the service
computes. Names follow an Italian-like distribution: common surnames repeat a lot (namesakes),
rarer ones a little. Queries mix surname prefixes of 2+ letters, full surnames with a given-name
prefix, an accent/apostrophe spelling, and the second page through the keyset page token.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bibliodesk.patrons.v1 import patrons_pb2 as pb  # noqa: E402
from bibliodesk.patrons.v1 import patrons_pb2_grpc  # noqa: E402
from bibliodesk.runtime.testing import Stack, pg_url  # noqa: E402
from services.patrons.domain.names import fold, search_key  # noqa: E402

COMMON_SURNAMES = [
    "Rossi",
    "Russo",
    "Ferrari",
    "Esposito",
    "Bianchi",
    "Romano",
    "Colombo",
    "Ricci",
    "Marino",
    "Greco",
    "Bruno",
    "Gallo",
    "Conti",
    "De Luca",
    "Mancini",
    "Costa",
    "Giordano",
    "Rizzo",
    "Lombardi",
    "Moretti",
    "Barbieri",
    "Fontana",
    "Santoro",
    "Mariani",
    "Rinaldi",
    "Caruso",
    "Ferrara",
    "Galli",
    "Martini",
    "Leone",
    "Longo",
    "Gentile",
    "Martinelli",
    "Vitale",
    "Lombardo",
    "Serra",
    "Coppola",
    "De Santis",
    "D'Angelo",
    "Marchetti",
    "Parisi",
    "Villa",
    "Conte",
    "Ferraro",
    "Ferri",
    "Fabbri",
    "Bianco",
    "Marini",
    "Grasso",
    "Valentini",
    "Messina",
    "Sala",
    "De Angelis",
    "Gatti",
    "Pellegrini",
    "Palumbo",
    "Sanna",
    "Farina",
    "Rizzi",
    "Monti",
    "Cattaneo",
    "Morelli",
    "Amato",
    "Silvestri",
    "Mazza",
    "Testa",
    "Grassi",
    "Pellegrino",
    "Carbone",
    "Giuliani",
    "Benedetti",
    "Barone",
    "Rossetti",
    "Caputo",
    "Montanari",
    "Guerra",
    "Palmieri",
    "Bernardi",
    "Martino",
    "Fiore",
    "De Rosa",
    "Ferretti",
    "Bellini",
    "Basile",
    "Riva",
    "Donati",
    "Piras",
    "Vitali",
    "Battaglia",
    "Sartori",
    "Neri",
    "Costantini",
    "Milani",
    "Pagano",
    "Ruggiero",
    "Sorrentino",
    "D'Amico",
    "Orlando",
    "Damico",
    "Negri",
    "Nicolò",
]
GIVEN = [
    "Francesco",
    "Alessandro",
    "Andrea",
    "Lorenzo",
    "Matteo",
    "Mattia",
    "Gabriele",
    "Leonardo",
    "Riccardo",
    "Tommaso",
    "Davide",
    "Giuseppe",
    "Antonio",
    "Federico",
    "Marco",
    "Giovanni",
    "Luca",
    "Mario",
    "Paolo",
    "Nicolò",
    "Sofia",
    "Giulia",
    "Aurora",
    "Alice",
    "Ginevra",
    "Emma",
    "Giorgia",
    "Greta",
    "Beatrice",
    "Anna",
    "Chiara",
    "Sara",
    "Martina",
    "Francesca",
    "Maria",
    "Elena",
    "Laura",
    "Valentina",
    "Federica",
    "Lucìa",
]
SYLLABLES = [
    "bar",
    "tol",
    "ini",
    "ma",
    "ri",
    "ca",
    "ne",
    "lo",
    "ve",
    "di",
    "san",
    "to",
    "ro",
    "gi",
    "ac",
    "chi",
    "pe",
    "tti",
    "gna",
    "zzo",
    "mon",
    "fer",
    "la",
    "cci",
    "ra",
    "bel",
    "lu",
    "so",
    "vi",
    "co",
]
CITIES = [
    ("Milano", "20121", "MI"),
    ("Roma", "00184", "RM"),
    ("Napoli", "80142", "NA"),
    ("Torino", "10124", "TO"),
    ("Bari", "70121", "BA"),
    ("Bologna", "40126", "BO"),
    ("Firenze", "50122", "FI"),
    ("Palermo", "90133", "PA"),
]
COLUMNS = (
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
)


def surnames(rng: random.Random, n_rare: int = 30_000) -> tuple[list[str], list[float]]:
    rare = sorted(
        {"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize() for _ in range(n_rare)}
    )
    names = COMMON_SURNAMES + rare
    weights = [400.0] * len(COMMON_SURNAMES) + [1.0] * len(rare)
    return names, weights


def rows(n: int, rng: random.Random) -> list[tuple[object, ...]]:
    names, weights = surnames(random.Random(7))
    chosen = rng.choices(names, weights, k=n)
    keys: dict[tuple[str, str], str] = {}
    given_keys = {g: fold(g) for g in GIVEN}
    now = datetime(2026, 12, 1, tzinfo=UTC)
    out = []
    for i, surname in enumerate(chosen):
        given = rng.choice(GIVEN)
        key = keys.get((surname, given))
        if key is None:
            key = keys[(surname, given)] = search_key(surname, given)
        city, cap, prov = rng.choice(CITIES)
        born = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 33_000))
        web = rng.random() < 0.2
        email = f"p{i}@example.org" if web or rng.random() < 0.5 else ""
        out.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128))),
                "WEB" if web else "DESK",
                "PRE_REGISTERED",
                given,
                surname,
                key,
                given_keys[given],
                born,
                city,
                f"Via Roma {rng.randint(1, 200)}",
                cap,
                city,
                prov,
                "IT",
                email,
                email.casefold() or None,
                "",
                "CEN",
                "it",
                None,
                "",
                "",
                "",
                None,
                None,
                None,
                None,
                None,
                now,
                now,
                now,
                1,
            )
        )
    return out


def load_postgresql(stack: Stack, data: list[tuple[object, ...]]) -> None:
    db = stack.runtime("patrons").db
    raw = db.write_engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(f"COPY patrons ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        raw.commit()
        cursor.execute("ANALYZE patrons")
        raw.commit()
    finally:
        raw.close()


def load_sqlite(stack: Stack, data: list[tuple[object, ...]]) -> None:
    from sqlalchemy import insert

    from services.patrons.store import tables

    db = stack.runtime("patrons").db
    with db.transaction() as session:
        for start in range(0, len(data), 20_000):
            session.execute(
                insert(tables.patrons),
                [dict(zip(COLUMNS, r, strict=True)) for r in data[start : start + 20_000]],
            )
    with db.write_engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")


def queries(rng: random.Random, count: int) -> list[tuple[str, pb.SearchPatronsRequest]]:
    names, _ = surnames(random.Random(7))
    out: list[tuple[str, pb.SearchPatronsRequest]] = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.35:
            s = rng.choice(COMMON_SURNAMES)
            out.append(
                (
                    "common surname + given prefix",
                    pb.SearchPatronsRequest(surname=s, given_name=rng.choice(GIVEN)[:3]),
                )
            )
        elif kind < 0.55:
            s = rng.choice(names)
            out.append(
                ("surname prefix (3+ letters)", pb.SearchPatronsRequest(surname=s[: rng.randint(3, 6)]))
            )
        elif kind < 0.70:
            out.append(("2-letter prefix", pb.SearchPatronsRequest(surname=rng.choice(names)[:2])))
        elif kind < 0.85:
            out.append(
                (
                    "accents/apostrophes",
                    pb.SearchPatronsRequest(
                        surname=rng.choice(["dangelo", "d'amico", "DE LUCA", "de santis"]),
                        given_name="nicolo",
                    ),
                )
            )
        else:
            out.append(("rare full surname", pb.SearchPatronsRequest(surname=rng.choice(names[200:]))))
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patrons", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument(
        "--backend", choices=["postgresql", "sqlite"], default="postgresql" if pg_url() else "sqlite"
    )
    args = parser.parse_args()
    if args.backend == "postgresql" and not pg_url():
        print("set BIBLIODESK_TEST_PG_URL for PostgreSQL", file=sys.stderr)
        return 2
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(
            Path(tmp),
            args.backend,
            ["patrons"],
            env={"BIBLIODESK_BOOTSTRAP_ADMIN_PASSWORD": "bench-only-password-77"},
        )
        await stack.start()
        try:
            t0 = time.perf_counter()
            data = rows(args.patrons, rng)
            t1 = time.perf_counter()
            (load_postgresql if args.backend == "postgresql" else load_sqlite)(stack, data)
            t2 = time.perf_counter()
            del data
            print(
                f"{args.backend}: generated {args.patrons:,} patrons in {t1 - t0:.1f}s, "
                f"loaded in {t2 - t1:.1f}s "
                f"({args.patrons / (t2 - t1):,.0f} rows/s)"
            )
            stub = patrons_pb2_grpc.PatronServiceStub(stack.channel("patrons", stack.token(kind="staff")))
            plan = queries(random.Random(1), args.queries)
            for _, request in plan[:50]:  # warm-up
                await stub.SearchPatrons(request)
            by_kind: dict[str, list[float]] = {}
            all_ms: list[float] = []
            hits = 0
            for kind, request in plan:
                started = time.perf_counter()
                reply = await stub.SearchPatrons(request)
                elapsed = (time.perf_counter() - started) * 1000
                hits += len(reply.hits)
                by_kind.setdefault(kind, []).append(elapsed)
                all_ms.append(elapsed)
                if reply.next_page_token:  # the next page through the keyset token
                    started = time.perf_counter()
                    await stub.SearchPatrons(
                        pb.SearchPatronsRequest(
                            surname=request.surname,
                            given_name=request.given_name,
                            page_token=reply.next_page_token,
                        )
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                    by_kind.setdefault("next page (keyset)", []).append(elapsed)
                    all_ms.append(elapsed)
            print(
                f"{len(all_ms)} searches through gRPC, {hits / len(plan):.1f} hits per first page on average"
            )
            print(f"{'query':34} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
            for kind, values in [*sorted(by_kind.items()), ("ALL", all_ms)]:
                print(
                    f"{kind:34} {len(values):5d} {statistics.median(values):8.2f} {pct(values, 0.95):8.2f} "
                    f"{pct(values, 0.99):8.2f}"
                )
            if args.backend == "postgresql":
                db = stack.runtime("patrons").db
                with db.write_engine.connect() as conn:
                    plan_rows = conn.exec_driver_sql(
                        "EXPLAIN SELECT * FROM patrons WHERE search_key >= 'rossi mar'"
                        " AND search_key < 'rossi mar\U0010ffff' ORDER BY search_key, id LIMIT 21"
                    ).fetchall()
                print("plan:", " | ".join(r[0].strip() for r in plan_rows))
        finally:
            await stack.stop()
            stack.drop_schemas()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
