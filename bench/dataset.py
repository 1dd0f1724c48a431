"""The generated library: a pure, deterministic function of (sizes, seed, now).

Every row is a function of its index, so each service's database can be loaded by a separate
process (in parallel) and the driver knows, without reading any database, which item is on loan
with a queue (V4), which is set aside for whom (V6), which requests are pending (R5), and which
patrons can log in (P6).

Layout (``pool`` rows each for the consumable operations):

items     [0, pool)            V4: on loan, with one or two WAITING_FOR_RETURN reservations
          [pool, 2 pool)       V6: SET_ASIDE, a READY_FOR_PICKUP reservation for one patron
          [2 pool, 3 pool)     R5: the item of a pending inbox request (half on loan, half on shelf)
          [3 pool, + loans)    ordinary loans
          rest                 on the shelf (what R1 web requests ask for)
patrons   [0, pool)            V4 borrowers
          [pool, 2.5 pool)     V4 queues (first and second in line)
          [3 pool, 4 pool)     V6 patrons waiting at the desk
          [4 pool, 5 pool)     R5 patrons whose requests are pending
          [5 pool, + logins)   patrons with web credentials (P6)
          rest                 everybody else: web submitters (R1), ordinary borrowers; 1 in 20 is
                               only pre-registered (no card)
requests  1,000,000 past requests over two years (70% advanced, 15% cut, 15% withdrawn), each
          advanced one with its closed reservation (fulfilled or expired), plus the ``pool``
          pending requests of R5 (the newest made today).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from services.patrons.domain.names import KEY_SEPARATOR, fold

SURNAMES = (
    (
        "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti "
        "De_Luca Mancini Costa Giordano Rizzo Lombardi Moretti Barbieri Fontana Santoro Mariani "
        "Rinaldi Caruso Ferrara Galli Martini Leone Longo Gentile Martinelli Vitale Lombardo Serra "
        "Coppola De_Santis D'Angelo Marchetti Parisi Villa Conte Ferraro Ferri Fabbri Bianco Marini "
        "Grasso Valentini Messina Sala De_Angelis Gatti Pellegrini Palumbo Sanna Farina Rizzi Monti "
        "Cattaneo Morelli Amato Silvestri Mazza Testa Grassi Pellegrino Carbone Giuliani Benedetti "
        "Barone Rossetti Caputo Montanari Guerra Palmieri Bernardi Martino Fiore De_Rosa Ferretti "
        "Bellini Basile Riva Donati Piras Vitali Battaglia Sartori Neri Costantini Milani Pagano Ruggiero "
        "Sorrentino D'Amico Orlando Damico Negri Fumagalli Zanetti Brambilla Cirillo Mazzoni Bassi "
        "Deluca Nicolosi Quaranta Zanella Ghilardi Ottolenghi Abate Agostini Albanese Angeli Antonelli "
        "Arena Baldi Ballerini Bertolini Bettini Bonetti Borghi Bosco Brunetti Calabrese Capelli "
        "Carli Casadei Castelli Cavallo Ceccarelli Cocco Colella Corsi Cristiani Curti D'Alessandro "
        "Di_Stefano Donadio Fabbro Falco Fiorentino Franchi Fusco Gagliardi Gallina Giannini Guidi "
        "Iacono Lanza Lazzari Lupo Maggi Manfredi Marchi Mele Melis Miceli Mora Moro Nardi Olivieri "
        "Orsini Pace Pagani Pastore Pepe Perrone Piazza Pozzi Raimondi Ricciardi Romeo Rota Sacco "
        "Salvi Sanna Santi Scotti Sestito Silvestri Sposato Tedesco Tosi Valenti Vecchi Zanardi"
    )
    .replace("_", " ")
    .split()
)
GIVEN = [
    "Marco",
    "Giulia",
    "Alessandro",
    "Francesca",
    "Luca",
    "Chiara",
    "Andrea",
    "Sara",
    "Matteo",
    "Martina",
    "Lorenzo",
    "Giorgia",
    "Francesco",
    "Valentina",
    "Davide",
    "Alessia",
    "Simone",
    "Elisa",
    "Federico",
    "Elena",
    "Riccardo",
    "Anna",
    "Gabriele",
    "Laura",
    "Nicolò",
    "Sofia",
    "Tommaso",
    "Aurora",
    "Stefano",
    "Beatrice",
    "Paolo",
    "Silvia",
    "Giovanni",
    "Ilaria",
    "Antonio",
    "Marta",
    "Roberto",
    "Caterina",
    "Giuseppe",
    "Noemi",
    "Pietro",
    "Camilla",
    "Emanuele",
    "Irene",
    "Daniele",
    "Federica",
    "Filippo",
    "Greta",
    "Leonardo",
    "Alice",
    "Michele",
    "Paola",
    "Fabio",
    "Roberta",
    "Enrico",
    "Serena",
    "Mattia",
    "Cristina",
    "Edoardo",
    "Lucia",
]
PLACES = [
    "Roma",
    "Milano",
    "Napoli",
    "Torino",
    "Palermo",
    "Genova",
    "Bologna",
    "Firenze",
    "Bari",
    "Catania",
    "Venezia",
    "Verona",
    "Messina",
    "Padova",
    "Trieste",
    "Brescia",
    "Parma",
    "Modena",
    "Livorno",
    "Cagliari",
]
STREETS = [
    "Via Roma",
    "Via Garibaldi",
    "Via Mazzini",
    "Corso Italia",
    "Via Dante",
    "Via Verdi",
    "Piazza Duomo",
    "Via Cavour",
    "Via Manzoni",
    "Viale Europa",
]
WORDS = [
    "notte",
    "vento",
    "mare",
    "storia",
    "città",
    "giardino",
    "silenzio",
    "memoria",
    "viaggio",
    "fiume",
    "lettera",
    "ombra",
    "luce",
    "estate",
    "inverno",
    "tempo",
    "casa",
    "strada",
    "sogno",
    "isola",
    "montagna",
    "segreto",
    "libro",
    "voce",
]
AUTHORS = [
    "Calvino",
    "Eco",
    "Ferrante",
    "Morante",
    "Levi",
    "Pavese",
    "Sciascia",
    "Buzzati",
    "Ginzburg",
    "Moravia",
    "Tabucchi",
    "Camilleri",
    "Baricco",
    "Maraini",
    "Pirandello",
    "Svevo",
    "Deledda",
    "Fenoglio",
    "Gadda",
    "Vittorini",
]
BRANCHES = ("CEN", "NORD", "SUD", "EST", "OVEST")
CATEGORIES = (
    # code, name, loan_limit, reservation_limit, enrollment months, pickup days
    ("ADULT", "Adults", 30, 10, 12, 7),
    ("YOUNG", "Young readers", 15, 5, 12, 7),
)
#: The password every bench account with web credentials uses (P6).
LOGIN_PASSWORD = "Lantern-Orbit-Meadow-42"

# UUID namespaces: ids are "random-looking" prefixes + the row index, so rows sort by index.
_NS = {
    "patron": 0x5A7B0000,
    "request": 0x7E900000,
    "reservation": 0x3C110000,
    "loan": 0x1D0A0000,
    "account": 0xACC00000,
    "past_reservation": 0x3C120000,
}


_fold = lru_cache(maxsize=None)(fold)


def _keys(surname: str, given: str) -> tuple[str, str]:
    """The patrons service's search keys (``names.search_key``), with each name folded once."""
    return f"{_fold(surname)}{KEY_SEPARATOR}{_fold(given)}", _fold(given)


def _luhn_tables() -> list[list[int]]:
    """Luhn contributions of a 4-digit block at an even / odd distance from the check digit."""
    tables = []
    for parity in (0, 1):
        row = []
        for block in range(10_000):
            total = 0
            for pos, ch in enumerate(reversed(f"{block:04d}")):
                d = int(ch)
                if (pos + parity) % 2 == 0:
                    d *= 2
                    if d > 9:
                        d -= 9
                total += d
            row.append(total)
        tables.append(row)
    return tables


_LUHN = _luhn_tables()


def card_number(i: int) -> str:
    """``2`` + 11 digits of ``i`` + the Luhn check digit (same as ``luhn_check_digit``, faster)."""
    payload = f"2{i:011d}"
    # blocks of 4 from the right: digits 0-3, 4-7, 8-11 of the 12-digit payload; 4 is even
    total = _LUHN[0][int(payload[8:12])] + _LUHN[0][int(payload[4:8])] + _LUHN[0][int(payload[0:4])]
    return payload + str((10 - total % 10) % 10)


def rid(kind: str, index: int) -> str:
    return str(uuid.UUID(int=(_NS[kind] << 96) | (0xB1B1 << 64) | index))


def _mix(i: int, salt: int) -> int:
    """A cheap deterministic hash of ``i`` (64-bit, splitmix-like)."""
    z = (i * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def _zipf_table(n: int, s: float = 1.0) -> list[int]:
    """Index lookup table (size 4096) drawing ``0..n-1`` with Zipf-like weights (Rossi is common)."""
    weights = [1.0 / (k + 1) ** s for k in range(n)]
    total = sum(weights)
    table: list[int] = []
    for k, w in enumerate(weights):
        table.extend([k] * max(1, round(4096 * w / total)))
    return table


_SURNAME_TABLE = _zipf_table(len(SURNAMES), 0.8)
_GIVEN_TABLE = _zipf_table(len(GIVEN), 0.7)
_SYLLABLES = [
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
_ENDINGS = ("i", "o", "a", "ini", "etti", "oni", "ello", "ucci")
#: share (per 1000) of patrons carrying one of the ~200 common surnames (Rossi then ~0.7 %).
COMMON_PER_MILLE = 100


def surname_for(h: int) -> str:
    """A surname: 10 % from the common list (Zipf-like: thousands of Rossi among 1M patrons),
    90 % composed from syllables (tens of thousands of rarer surnames, a few namesakes each)."""
    if h % 1000 < COMMON_PER_MILLE:
        return SURNAMES[_SURNAME_TABLE[(h >> 10) & 4095]]
    n = len(_SYLLABLES)
    a, b, c = _SYLLABLES[(h >> 10) % n], _SYLLABLES[(h >> 15) % n], _SYLLABLES[(h >> 20) % n]
    return (a + b + c + _ENDINGS[(h >> 25) % len(_ENDINGS)]).capitalize()


@dataclass(frozen=True)
class Layout:
    patrons: int
    items: int
    requests: int
    seed: int
    now: datetime  # aware UTC: the moment the library was loaded
    tz: str = "Europe/Rome"

    # --- sizes of the ranges -----------------------------------------------------------------

    @property
    def pool(self) -> int:
        return max(1, min(self.items // 20, self.patrons // 12, 25_000))

    @property
    def logins(self) -> int:
        return max(1, min(1000, self.pool))

    @property
    def ordinary_loans(self) -> int:
        return self.items // 10

    @property
    def first_other_patron(self) -> int:
        return 5 * self.pool + self.logins

    @property
    def first_shelf_item(self) -> int:
        return 3 * self.pool + self.ordinary_loans

    def check(self) -> None:
        if self.patrons < self.first_other_patron + 10:
            raise ValueError(
                f"--patrons too small for the layout (need at least {self.first_other_patron + 10})"
            )
        if self.items < self.first_shelf_item + 10:
            raise ValueError(f"--items too small for the layout (need at least {self.first_shelf_item + 10})")

    @property
    def today(self) -> date:
        return self.now.astimezone(ZoneInfo(self.tz)).date()

    @property
    def start_of_today(self) -> datetime:
        tz = ZoneInfo(self.tz)
        return datetime.combine(self.today, datetime.min.time(), tz).astimezone(UTC)

    # --- patrons -------------------------------------------------------------------------------

    def patron_id(self, i: int) -> str:
        return rid("patron", i)

    def patron_name(self, i: int) -> tuple[str, str]:
        h = _mix(i, self.seed)
        return surname_for(h), GIVEN[_GIVEN_TABLE[(h >> 32) & 4095]]

    def patron_card(self, i: int) -> str:
        return card_number(i)

    def patron_enrolled(self, i: int) -> bool:
        return i < self.first_other_patron or i % 20 != 19

    def patron_row(self, i: int) -> tuple:
        """Values in the order of ``PATRON_COLUMNS``."""
        h = _mix(i, self.seed + 1)
        surname, given = self.patron_name(i)
        key, given_key = _keys(surname, given)
        enrolled = self.patron_enrolled(i)
        birth = date(1940 + h % 70, 1 + (h >> 8) % 12, 1 + (h >> 16) % 28)
        email = f"{fold(given)}.{fold(surname)}.{i}@example.org"
        created = self.now - timedelta(days=1 + (h >> 24) % 3000)
        category = "YOUNG" if birth.year > 2005 else "ADULT"
        branch = BRANCHES[(h >> 32) % len(BRANCHES)]
        return (
            self.patron_id(i),
            "WEB" if (not enrolled or h % 3 == 0) else "DESK",
            "ENROLLED" if enrolled else "PRE_REGISTERED",
            given,
            surname,
            key,
            given_key,
            birth,
            PLACES[(h >> 40) % len(PLACES)],
            f"{STREETS[(h >> 44) % len(STREETS)]} {1 + (h >> 48) % 200}",
            f"{10000 + (h >> 20) % 89999:05d}",
            PLACES[(h >> 36) % len(PLACES)],
            "RM",
            "IT",
            email,
            email.casefold(),
            f"+39 3{(h >> 10) % 100:02d} {(h >> 17) % 10000000:07d}",
            branch,
            "en" if h % 17 == 0 else "it",
            "IDENTITY_CARD" if enrolled else None,
            f"CA{(h >> 5) % 10000000:07d}XY" if enrolled else "",
            f"Zona {1 + (h >> 52) % 9}" if enrolled else "",
            "IT",
            category if enrolled else None,
            self.patron_card(i) if enrolled else None,
            None,
            created.date() if enrolled else None,
            (self.today + timedelta(days=30 + h % 330)) if enrolled else None,
            created,
            created,
            created,
            1,
        )

    # --- items ---------------------------------------------------------------------------------

    def item_barcode(self, j: int) -> str:
        return f"3{j:012d}"

    def item_title(self, j: int) -> tuple[str, str]:
        h = _mix(j, self.seed + 2)
        a, b = WORDS[h % len(WORDS)], WORDS[(h >> 8) % len(WORDS)]
        return f"La {a} e il {b} {1 + (h >> 16) % 99}", AUTHORS[(h >> 24) % len(AUTHORS)]

    def item_branch(self, j: int) -> str:
        return BRANCHES[_mix(j, self.seed + 3) % len(BRANCHES)]

    def is_v4_item(self, j: int) -> bool:
        return j < self.pool

    # --- the consumable operations -----------------------------------------------------------

    def v4_item(self, k: int) -> str:
        """Item ``k`` on loan with a queue: checking it in makes the first in line READY."""
        return self.item_barcode(k)

    def v6_item(self, k: int) -> tuple[str, str]:
        """(item barcode, patron id): the item set aside for the patron, who is at the desk."""
        return self.item_barcode(self.pool + k), self.patron_id(3 * self.pool + k)

    def r5_request(self, k: int) -> str:
        """The id of the ``k``-th pending request (0 = the newest of today)."""
        return rid("request", self.requests + k)

    def r5_created(self, k: int) -> datetime:
        today_count = min(self.pool, 2000)
        if k < today_count:
            span = max(1.0, (self.now - self.start_of_today).total_seconds() - 60)
            return self.now - timedelta(seconds=60 + span * k / today_count)
        return self.start_of_today - timedelta(seconds=1 + (k * 2591) % (30 * 86400))

    def login_username(self, k: int) -> str:
        return f"reader{k:06d}"

    def login_patron(self, k: int) -> int:
        return 5 * self.pool + k

    @property
    def submitters(self) -> int:
        """How many enrolled patrons submit web requests (R1)."""
        base = -(-self.first_other_patron // 20) * 20  # first multiple of 20 in the range
        full, rest = divmod(self.patrons - base, 20)
        return full * 19 + min(rest, 19)

    def submitter(self, n: int) -> int:
        """The patron index of the ``n``-th web submission: patron ``n % submitters`` of the enrolled
        ones in the "everybody else" range, so the same patron comes back only after all others."""
        a = n % self.submitters
        base = -(-self.first_other_patron // 20) * 20
        return base + 20 * (a // 19) + a % 19

    def shelf_item(self, n: int) -> int:
        """The item of the ``n``-th web submission: a patron's successive submissions ask for
        distinct items (never "ALREADY_REQUESTED"), spread over the shelf."""
        span = self.items - self.first_shelf_item
        a, k = n % self.submitters, n // self.submitters
        return self.first_shelf_item + (_mix(a, self.seed + 5) + k) % span

    def ordinary_borrower(self, j: int) -> int:
        span = self.patrons - self.first_other_patron
        i = self.first_other_patron + _mix(j, self.seed + 6) % span
        return i if self.patron_enrolled(i) else i - 1

    # --- past requests -------------------------------------------------------------------------

    def past_request(self, r: int) -> tuple[int, int, str, datetime]:
        """(patron index, item index, final status, created_at) of past request ``r``."""
        h = _mix(r, self.seed + 7)
        span = self.patrons - self.first_other_patron
        patron = self.first_other_patron + h % span
        item = (h >> 20) % self.items
        roll = (h >> 40) % 100
        status = "ADVANCED" if roll < 70 else "CUT" if roll < 85 else "WITHDRAWN"
        created = self.start_of_today - timedelta(seconds=1 + (h >> 8) % (730 * 86400))
        return patron, item, status, created
