"""Demo data for ``up --demo``: two categories and a handful of patrons, namesakes included."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from bibliodesk.runtime.service import ServiceRuntime

from .app import patrons as uc
from .app.config import PatronsConfig
from .domain.categories import Category
from .domain.rules import DetailsInput, validate_details
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

PEOPLE = (
    # Two namesakes "Rossi Mario": told apart by birth data and origin (P2).
    (
        "WEB",
        DetailsInput(
            "Mario",
            "Rossi",
            "1971-03-14",
            "Milano",
            "Via Roma 12",
            "20121",
            "Milano",
            "MI",
            "IT",
            "mario.rossi71@example.org",
            "+39 02 1234567",
            "CEN",
        ),
    ),
    (
        "DESK",
        DetailsInput(
            "Mario",
            "Rossi",
            "1985-11-02",
            "Napoli",
            "Corso Garibaldi 8",
            "80142",
            "Napoli",
            "NA",
            "IT",
            "",
            "+39 081 7654321",
            "CEN",
        ),
    ),
    (
        "WEB",
        DetailsInput(
            "Nicolò",
            "D'Angelo",
            "1990-04-12",
            "Bari",
            "Via Sparano 3",
            "70121",
            "Bari",
            "BA",
            "IT",
            "nicolo.dangelo@example.org",
            "",
            "CEN",
        ),
    ),
    (
        "WEB",
        DetailsInput(
            "Giulia",
            "De Luca",
            "2001-07-30",
            "Torino",
            "Via Po 45",
            "10124",
            "Torino",
            "TO",
            "IT",
            "giulia.deluca@example.org",
            "",
            "NORD",
        ),
    ),
    (
        "DESK",
        DetailsInput(
            "Anna",
            "Bianchi",
            "1960-01-20",
            "Roma",
            "Via Appia 101",
            "00179",
            "Roma",
            "RM",
            "IT",
            "anna.bianchi@example.org",
            "",
            "CEN",
        ),
    ),
)


async def load(rt: ServiceRuntime) -> None:
    cfg: PatronsConfig = rt.state["config"]

    def tx(session: Session) -> int:
        if session.execute(select(tables.patrons.c.id).limit(1)).first():
            return 0
        now = rt.clock.now()
        for category in CATEGORIES:
            if (
                session.execute(
                    select(tables.categories.c.code).where(tables.categories.c.code == category.code)
                ).first()
                is None
            ):
                uc.create_category(session, category, now=now)
        for origin, form in PEOPLE:
            details = validate_details(
                form, today=rt.clock.today(), email_required=origin == "WEB", branches=frozenset()
            )
            if origin == "WEB":
                uc.pre_register(session, cfg, details, consent=True, client="demo", now=now)
            else:
                uc.create_at_desk(session, details, consent=True, now=now, actor=uc.Actor("demo"))
        return len(PEOPLE)

    created = await rt.db.write(tx)
    if created:
        log.info("patrons demo data: %d categories, %d patrons", len(CATEGORIES), created)
