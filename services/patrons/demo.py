"""Demo data for ``up --demo``: two categories and a handful of patrons, namesakes included.

The other services' demos refer to patrons by placeholder ids and cards ("demo-reader-4",
"DEMO-CARD-0104"): the enrolled demo patrons here carry exactly those ids and cards, so a request,
a reservation or a notice of the demo library finds its patron. Demo cards are written as they are
(they predate the library's check-digit rule); everything else goes through the normal rules.
"""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from bibliodesk.runtime.service import ServiceRuntime

from .app import patrons as uc
from .app.config import PatronsConfig
from .domain.categories import Category
from .domain.patron import DocumentType, Origin, Patron, PatronStatus
from .domain.rules import DetailsInput, validate_details
from .store import repository as repo
from .store import tables

log = logging.getLogger(__name__)

CATEGORIES = (
    Category(
        "ADULT",
        "Adulti",
        loan_limit=10,
        reservation_limit=5,
        enrollment_period_months=12,
        pickup_period_days=7,
    ),
    Category(
        "YOUNG",
        "Ragazzi (under 14)",
        loan_limit=5,
        reservation_limit=3,
        enrollment_period_months=12,
        pickup_period_days=10,
    ),
)


def _form(
    given: str,
    surname: str,
    born: str,
    place: str,
    street: str,
    cap: str,
    city: str,
    prov: str,
    email: str,
    phone: str = "",
    branch: str = "CEN",
) -> DetailsInput:
    return DetailsInput(given, surname, born, place, street, cap, city, prov, "IT", email, phone, branch)


#: Enrolled patrons with the ids and cards the other demos use: (id, card, origin, category, form).
ENROLLED = (
    (
        "demo-reader-4",
        "DEMO-CARD-0104",
        Origin.WEB,
        "ADULT",
        _form(
            "Mario",
            "Rossi",
            "1971-03-14",
            "Milano",
            "Via Roma 12",
            "20121",
            "Milano",
            "MI",
            "mario.rossi71@example.org",
            "+39 02 1234567",
        ),
    ),
    (
        "demo-reader-5",
        "DEMO-CARD-0105",
        Origin.WEB,
        "ADULT",
        _form(
            "Giulia",
            "De Luca",
            "2001-07-30",
            "Torino",
            "Via Po 45",
            "10124",
            "Torino",
            "TO",
            "giulia.deluca@example.org",
            "",
            "NORD",
        ),
    ),
    (
        "demo-reader-6",
        "DEMO-CARD-0106",
        Origin.DESK,
        "ADULT",
        _form(
            "Anna",
            "Bianchi",
            "1960-01-20",
            "Roma",
            "Via Appia 101",
            "00179",
            "Roma",
            "RM",
            "anna.bianchi@example.org",
        ),
    ),
    (
        "demo-reader-1",
        "DEMO-CARD-0101",
        Origin.DESK,
        "ADULT",
        _form(
            "Francesca",
            "Esposito",
            "1988-09-09",
            "Napoli",
            "Via Toledo 5",
            "80134",
            "Napoli",
            "NA",
            "francesca.esposito@example.org",
        ),
    ),
    (
        "demo-reader-2",
        "DEMO-CARD-0102",
        Origin.WEB,
        "ADULT",
        _form(
            "Luca",
            "Ricci",
            "1979-12-01",
            "Bologna",
            "Via Indipendenza 20",
            "40121",
            "Bologna",
            "BO",
            "luca.ricci@example.org",
        ),
    ),
    (
        "demo-reader-3",
        "DEMO-CARD-0103",
        Origin.DESK,
        "YOUNG",
        _form(
            "Sara",
            "Marino",
            "2014-05-18",
            "Roma",
            "Via Nazionale 7",
            "00184",
            "Roma",
            "RM",
            "famiglia.marino@example.org",
        ),
    ),
    (
        "demo-borrower-1",
        "DEMO-CARD-0001",
        Origin.DESK,
        "ADULT",
        _form(
            "Paolo",
            "Greco",
            "1955-02-11",
            "Palermo",
            "Via Maqueda 90",
            "90133",
            "Palermo",
            "PA",
            "paolo.greco@example.org",
        ),
    ),
    (
        "demo-borrower-2",
        "DEMO-CARD-0002",
        Origin.DESK,
        "ADULT",
        _form(
            "Elena",
            "Conti",
            "1992-06-23",
            "Firenze",
            "Via dei Servi 14",
            "50122",
            "Firenze",
            "FI",
            "",
            "+39 055 998877",
        ),
    ),
    (
        "demo-borrower-3",
        "DEMO-CARD-0003",
        Origin.WEB,
        "ADULT",
        _form(
            "Marco",
            "Gallo",
            "1983-10-05",
            "Bari",
            "Corso Cavour 3",
            "70121",
            "Bari",
            "BA",
            "marco.gallo@example.org",
            "",
            "NORD",
        ),
    ),
)

#: Pre-registered from home, to complete at the desk (P1/P2): a namesake of Rossi Mario among them.
PRE_REGISTERED = (
    _form(
        "Mario",
        "Rossi",
        "1985-11-02",
        "Napoli",
        "Corso Garibaldi 8",
        "80142",
        "Napoli",
        "NA",
        "m.rossi85@example.org",
        "+39 081 7654321",
    ),
    _form(
        "Nicolò",
        "D'Angelo",
        "1990-04-12",
        "Bari",
        "Via Sparano 3",
        "70121",
        "Bari",
        "BA",
        "nicolo.dangelo@example.org",
    ),
)


async def load(rt: ServiceRuntime) -> None:
    cfg: PatronsConfig = rt.state["config"]

    def tx(session: Session) -> int:
        if session.execute(select(tables.patrons.c.id).limit(1)).first():
            return 0
        now, today = rt.clock.now(), rt.clock.today()
        for category in CATEGORIES:
            if repo.find_category(session, category.code) is None:
                uc.create_category(session, category, now=now)
        for number, (patron_id, card, origin, code, form) in enumerate(ENROLLED, start=1):
            d = validate_details(form, today=today, email_required=False)
            start = date(today.year, 1, 8) if today.month > 1 else today
            patron = Patron(
                id=patron_id,
                origin=origin,
                status=PatronStatus.ENROLLED,
                given_name=d.given_name,
                surname=d.surname,
                birth_date=d.birth_date,
                birth_place=d.birth_place,
                address=d.address,
                email=d.email,
                phone=d.phone,
                home_branch=d.home_branch,
                language=d.language,
                document_type=DocumentType.IDENTITY_CARD,
                document_number=f"CA{4100000 + number}",
                nationality="IT",
                zone="Centro",
                category_code=code,
                card_barcode=card,
                enrollment_date=start,
                enrollment_expiry_date=repo.get_category(session, code).expiry_for(start),
                privacy_consent_time=now,
                created_at=now,
                updated_at=now,
                version=1,
            )
            repo.insert_patron(session, patron)
            repo.record_card(session, patron.id, card, "", now)
            repo.add_history(
                session,
                patron.id,
                at=now,
                action="enroll",
                from_status=None,
                to_status=patron.status.value,
                reason="demo library",
                actor="demo",
            )
        for form in PRE_REGISTERED:
            details = validate_details(form, today=today, email_required=True, branches=frozenset())
            uc.pre_register(session, cfg, details, consent=True, client="demo", now=now)
        return len(ENROLLED) + len(PRE_REGISTERED)

    created = await rt.db.write(tx)
    if created:
        log.info(
            "patrons demo data: %d categories, %d patrons (try: bibliodesk patrons search rossi)",
            len(CATEGORIES),
            created,
        )
