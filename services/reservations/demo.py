"""Demo data for ``bibliodesk up --demo``: two branches' holdings, some on loan, a small queue.

Barcodes are stable (``DEMO_ITEMS``) so other services' demo data can refer to them: the requests
demo can file web requests for an item on the shelf (e.g. BD0001) and one on loan (BD0003).
Borrowers are placeholder ids with demo cards: the patrons service mints its demo patrons' ids at
random, and the desk only ever sees a borrower's card number.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bibliodesk.runtime.clock import ManualClock
from bibliodesk.runtime.service import ServiceRuntime

from .app import use_cases as uc
from .domain import Origin
from .store.tables import items

log = logging.getLogger(__name__)

DEMO_ITEMS = (
    ("BD0001", "Il nome della rosa", "Umberto Eco", "CEN", "853.914 ECO"),
    ("BD0002", "Se questo è un uomo", "Primo Levi", "CEN", "853.914 LEV"),
    ("BD0003", "La coscienza di Zeno", "Italo Svevo", "CEN", "853.912 SVE"),
    ("BD0004", "Il Gattopardo", "Giuseppe Tomasi di Lampedusa", "CEN", "853.914 TOM"),
    ("BD0005", "Le città invisibili", "Italo Calvino", "CEN", "853.914 CAL"),
    ("BD0006", "L'amica geniale", "Elena Ferrante", "CEN", "853.92 FER"),
    ("BD0007", "I promessi sposi", "Alessandro Manzoni", "CEN", "853.7 MAN"),
    ("BD0008", "Il barone rampante", "Italo Calvino", "CEN", "853.914 CAL"),
    ("BD0009", "La luna e i falò", "Cesare Pavese", "CEN", "853.912 PAV"),
    ("BD0010", "Il giorno della civetta", "Leonardo Sciascia", "CEN", "853.914 SCI"),
    ("BD0011", "Lessico famigliare", "Natalia Ginzburg", "NORD", "853.914 GIN"),
    ("BD0012", "Il sistema periodico", "Primo Levi", "NORD", "853.914 LEV"),
    ("BD0013", "Marcovaldo", "Italo Calvino", "NORD", "853.914 CAL"),
    ("BD0014", "Gomorra", "Roberto Saviano", "NORD", "364.106 SAV"),
    ("BD0015", "La storia", "Elsa Morante", "NORD", "853.914 MOR"),
)

#: (item, borrower id, borrower card, lent how many days ago)
DEMO_LOANS = (
    ("BD0003", "demo-borrower-1", "DEMO-CARD-0001", 20),
    ("BD0006", "demo-borrower-2", "DEMO-CARD-0002", 35),  # overdue
    ("BD0010", "demo-borrower-1", "DEMO-CARD-0001", 5),
    ("BD0014", "demo-borrower-3", "DEMO-CARD-0003", 12),
)

#: (item, patron, card, origin): a queue on BD0006 and one copy set aside from the shelf.
DEMO_RESERVATIONS = (
    ("BD0006", "demo-reader-1", "DEMO-CARD-0101", Origin.DESK),
    ("BD0006", "demo-reader-2", "DEMO-CARD-0102", Origin.DESK),
    ("BD0007", "demo-reader-3", "DEMO-CARD-0103", Origin.DESK),
)


async def load_demo(rt: ServiceRuntime) -> None:
    policy = uc.Policy.from_settings(rt.settings)

    def tx(session: Session) -> int:
        if session.execute(select(items.c.barcode).limit(1)).first():
            return 0
        header = "barcode,title,author,branch,call_number\n"
        body = "".join(f'{b},"{t}","{a}",{br},{cn}\n' for b, t, a, br, cn in DEMO_ITEMS)
        ctx = uc.Ctx(rt.clock, policy)
        report = uc.import_items(
            session, ctx, csv_content=header + body, first_line_number=2, default_branch="", dry_run=False
        )
        assert not report.rejected, report.rejected
        now = rt.clock.now()
        for barcode, borrower, card, days_ago in DEMO_LOANS:
            then = uc.Ctx(ManualClock(now - timedelta(days=days_ago), tz=rt.clock.tz), policy)
            facts = uc.PatronFacts(patron_id=borrower, card_barcode=card)
            uc.check_out(
                session,
                then,
                item_barcode=barcode,
                patron_id=borrower,
                facts=facts,
                branch="",
                actor="system:demo",
            )
        for barcode, patron, card, origin in DEMO_RESERVATIONS:
            facts = uc.PatronFacts(patron_id=patron, card_barcode=card)
            uc.create_reservation(
                session,
                ctx,
                patron_id=patron,
                item_barcode=barcode,
                pickup_branch="CEN",
                origin=origin,
                deliver_now=False,
                note="",
                facts=facts,
                actor="system:demo",
            )
        return len(DEMO_ITEMS)

    created = await rt.db.write(tx)
    if created:
        log.info(
            "reservations demo data: %d items, %d on loan, %d reservations",
            created,
            len(DEMO_LOANS),
            len(DEMO_RESERVATIONS),
        )
