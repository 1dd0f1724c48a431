"""Demo data for ``bibliodesk up --demo``: a few web requests in the inbox, today's and earlier ones.

They refer to the reservations demo's stable barcodes (BD0001 on the shelf, BD0003 and BD0010 on
loan...) and to demo patrons by placeholder ids and cards, as the reservations demo does: the
patrons service mints its demo patrons' ids at random. Written straight into the inbox (as if
submitted earlier), so "today" and "earlier" both show in ``bibliodesk requests list``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bibliodesk.runtime.service import ServiceRuntime
from bibliodesk.runtime.types import new_id

from .domain.model import CutReason, ReservationRequest
from .store import repository as repo
from .store.tables import inbox_requests

log = logging.getLogger(__name__)

#: (patron, card, name, item, title, author, hours ago, note, what the desk already did)
DEMO_REQUESTS = (
    (
        "demo-reader-4",
        "DEMO-CARD-0104",
        "Rossi Mario",
        "BD0001",
        "Il nome della rosa",
        "Umberto Eco",
        1,
        "Passo sabato mattina",
        "",
    ),
    (
        "demo-reader-5",
        "DEMO-CARD-0105",
        "De Luca Giulia",
        "BD0003",
        "La coscienza di Zeno",
        "Italo Svevo",
        2,
        "",
        "notice",
    ),
    (
        "demo-reader-4",
        "DEMO-CARD-0104",
        "Rossi Mario",
        "BD0010",
        "Il giorno della civetta",
        "Leonardo Sciascia",
        26,
        "",
        "",
    ),
    (
        "demo-reader-6",
        "DEMO-CARD-0106",
        "Bianchi Anna",
        "BD0013",
        "Marcovaldo",
        "Italo Calvino",
        50,
        "Per mio nipote",
        "",
    ),
    (
        "demo-reader-5",
        "DEMO-CARD-0105",
        "De Luca Giulia",
        "BD0002",
        "Se questo è un uomo",
        "Primo Levi",
        75,
        "",
        "cut",
    ),
)


async def load_demo(rt: ServiceRuntime) -> None:
    def tx(session: Session) -> int:
        if session.execute(select(inbox_requests.c.id).limit(1)).first():
            return 0
        now = rt.clock.now()
        for patron, card, name, item, title, author, hours_ago, note, done in DEMO_REQUESTS:
            made = now - timedelta(hours=hours_ago)
            request = ReservationRequest.submit(
                id=new_id(),
                patron_id=patron,
                item_barcode=item,
                pickup_branch="CEN" if item < "BD0011" else "NORD",
                note=note,
                actor=f"patron:{patron}",
                now=made,
                patron_display_name=name,
                patron_card_barcode=card,
                item_title=title,
                item_author=author,
            )
            if done in ("notice", "cut"):
                request.record_notice("staff:demo", made + timedelta(minutes=30))
            if done == "cut":
                request.cut(
                    CutReason.ITEM_NOT_LENDABLE,
                    "copia in restauro",
                    "staff:demo",
                    made + timedelta(hours=1),
                    notice_with_cut=False,
                    confirm_without_notice=False,
                )
            repo.add(session, request)
        return len(DEMO_REQUESTS)

    created = await rt.db.write(tx)
    if created:
        log.info(
            "requests demo data: %d web requests (advance one with: bibliodesk requests advance ID)", created
        )
