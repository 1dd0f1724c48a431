"""Rows <-> domain objects, and the queries the use cases need. Runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from bibliodesk.runtime.db import lock_for_update
from bibliodesk.runtime.errors import Aborted, NotFound

from ..domain.categories import Category
from ..domain.names import KEY_SEPARATOR, prefix_range
from ..domain.patron import DocumentType, DuplicateFlag, Origin, Patron, PatronStatus
from ..domain.rules import Address
from . import tables as t


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


# --- categories ----------------------------------------------------------------------------------


def _category(row: Any) -> Category:
    return Category(
        code=row.code,
        name=row.name,
        loan_limit=row.loan_limit,
        reservation_limit=row.reservation_limit,
        enrollment_period_months=row.enrollment_period_months,
        pickup_period_days=row.pickup_period_days,
        active=row.active,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# Look-ups by key that every peer call makes (standing, category), built once; bound at execution.
_CATEGORY = select(t.categories).where(t.categories.c.code == bindparam("b_key"))
_PATRON = select(t.patrons).where(t.patrons.c.id == bindparam("b_key"))


def _by_key(session: Session, statement: Any, key: str, for_update: bool) -> Any:
    if for_update:
        return session.execute(lock_for_update(statement, session), {"b_key": key}).first()
    return session.execute(statement, {"b_key": key}).first()


def get_category(session: Session, code: str, *, for_update: bool = False) -> Category:
    row = _by_key(session, _CATEGORY, code, for_update)
    if row is None:
        raise NotFound("CATEGORY_NOT_FOUND", f"no patron category {code!r}", metadata={"category_code": code})
    return _category(row)


def find_category(session: Session, code: str) -> Category | None:
    row = session.execute(select(t.categories).where(t.categories.c.code == code)).first()
    return _category(row) if row else None


def list_categories(session: Session, *, include_inactive: bool, after: str, limit: int) -> list[Category]:
    query = select(t.categories).where(t.categories.c.code > after).order_by(t.categories.c.code).limit(limit)
    if not include_inactive:
        query = query.where(t.categories.c.active.is_(True))
    return [_category(r) for r in session.execute(query)]


def insert_category(session: Session, c: Category) -> None:
    session.execute(
        insert(t.categories).values(
            code=c.code,
            name=c.name,
            loan_limit=c.loan_limit,
            reservation_limit=c.reservation_limit,
            enrollment_period_months=c.enrollment_period_months,
            pickup_period_days=c.pickup_period_days,
            active=c.active,
            version=c.version,
            created_at=c.created_at,
            updated_at=c.updated_at,
        )
    )


def update_category(session: Session, c: Category, expected_version: int) -> None:
    result = session.execute(
        update(t.categories)
        .where(t.categories.c.code == c.code, t.categories.c.version == expected_version)
        .values(
            name=c.name,
            loan_limit=c.loan_limit,
            reservation_limit=c.reservation_limit,
            enrollment_period_months=c.enrollment_period_months,
            pickup_period_days=c.pickup_period_days,
            active=c.active,
            version=c.version,
            updated_at=c.updated_at,
        )
    )
    if _rowcount(result) != 1:
        raise Aborted("ETAG_MISMATCH", "the category changed since it was read; read it again")


# --- patrons -------------------------------------------------------------------------------------


def _patron(row: Any) -> Patron:
    return Patron(
        id=row.id,
        origin=Origin(row.origin),
        status=PatronStatus(row.status),
        given_name=row.given_name,
        surname=row.surname,
        birth_date=row.birth_date,
        birth_place=row.birth_place,
        address=Address(row.street, row.postal_code, row.city, row.province, row.country_code),
        email=row.email,
        phone=row.phone,
        home_branch=row.home_branch,
        language=row.language,
        document_type=DocumentType(row.document_type) if row.document_type else None,
        document_number=row.document_number,
        zone=row.zone,
        nationality=row.nationality,
        category_code=row.category_code or "",
        card_barcode=row.card_barcode or "",
        rfid_uid=row.rfid_uid or "",
        enrollment_date=row.enrollment_date,
        enrollment_expiry_date=row.enrollment_expiry_date,
        privacy_consent_time=row.privacy_consent_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
    )


def _values(p: Patron) -> dict[str, Any]:
    return dict(
        origin=p.origin.value,
        status=p.status.value,
        given_name=p.given_name,
        surname=p.surname,
        search_key=p.search_key,
        given_key=p.given_key,
        birth_date=p.birth_date,
        birth_place=p.birth_place,
        street=p.address.street,
        postal_code=p.address.postal_code,
        city=p.address.city,
        province=p.address.province,
        country_code=p.address.country_code,
        email=p.email,
        email_key=p.email_key or None,
        phone=p.phone,
        home_branch=p.home_branch,
        language=p.language,
        document_type=p.document_type.value if p.document_type else None,
        document_number=p.document_number,
        zone=p.zone,
        nationality=p.nationality,
        category_code=p.category_code or None,
        card_barcode=p.card_barcode or None,
        rfid_uid=p.rfid_uid or None,
        enrollment_date=p.enrollment_date,
        enrollment_expiry_date=p.enrollment_expiry_date,
        privacy_consent_at=p.privacy_consent_time,
        created_at=p.created_at,
        updated_at=p.updated_at,
        version=p.version,
    )


def insert_patron(session: Session, p: Patron) -> None:
    session.execute(insert(t.patrons).values(id=p.id, **_values(p)))


def save_patron(session: Session, p: Patron, expected_version: int) -> None:
    """Writes ``p`` if nobody changed it since ``expected_version`` was read (else ABORTED)."""
    result = session.execute(
        update(t.patrons)
        .where(t.patrons.c.id == p.id, t.patrons.c.version == expected_version)
        .values(**_values(p))
    )
    if _rowcount(result) != 1:
        raise Aborted(
            "ETAG_MISMATCH",
            "the patron record changed since it was read; read it again",
            metadata={"patron_id": p.id},
        )


def get_patron(
    session: Session, patron_id: str, *, for_update: bool = False, with_flags: bool = True
) -> Patron:
    row = _by_key(session, _PATRON, patron_id, for_update)
    if row is None:
        raise NotFound("PATRON_NOT_FOUND", "no such patron", metadata={"patron_id": patron_id})
    patron = _patron(row)
    if with_flags:
        patron.duplicate_flags = open_duplicate_flags(session, patron_id)
    return patron


def patron_by_card(session: Session, *, barcode: str = "", rfid_uid: str = "") -> Patron | None:
    column = t.patrons.c.card_barcode if barcode else t.patrons.c.rfid_uid
    row = session.execute(select(t.patrons).where(column == (barcode or rfid_uid))).first()
    return _patron(row) if row else None


def card_in_use(session: Session, *, barcode: str = "", rfid_uid: str = "", except_patron: str = "") -> bool:
    column = t.patrons.c.card_barcode if barcode else t.patrons.c.rfid_uid
    query = select(t.patrons.c.id).where(column == (barcode or rfid_uid))
    if except_patron:
        query = query.where(t.patrons.c.id != except_patron)
    return session.execute(query).first() is not None


def search(
    session: Session,
    *,
    surname: str,
    given_name: str,
    birth_date: date | None,
    origin: str,
    status: str,
    after: tuple[str, str] | None,
    limit: int,
) -> list[tuple[Patron, bool]]:
    """Keyset-paged prefix search on the indexed surname-first key (no full scan); each patron
    with whether an undismissed duplicate flag is open on them (in the same query).

    With a given name, the exact-surname range ``"<surname> <given prefix>"`` is tight on the index
    and comes first in key order (a space sorts before any letter); only when that range cannot fill
    the page are the longer surnames starting with the prefix scanned, filtered on the given name.
    """
    p = t.patrons.c
    s_low, s_high = prefix_range(surname)
    g_low, g_high = prefix_range(given_name) if given_name else ("", "")

    f = t.duplicate_flags.c
    flagged = (
        select(f.patron_id).where(f.patron_id == p.id, f.dismissed_at.is_(None)).exists().label("flagged")
    )

    def run(low: str, high: str, given_filter: bool, n: int) -> list[tuple[Patron, bool]]:
        query = select(t.patrons, flagged).where(p.search_key >= low, p.search_key < high)
        if given_filter:
            query = query.where(p.given_key >= g_low, p.given_key < g_high)
        if birth_date is not None:
            query = query.where(p.birth_date == birth_date)
        if origin:
            query = query.where(p.origin == origin)
        if status:
            query = query.where(p.status == status)
        if after is not None:
            key, last_id = after
            query = query.where((p.search_key > key) | and_(p.search_key == key, p.id > last_id))
        query = query.order_by(p.search_key, p.id).limit(n)
        return [(_patron(r), bool(r.flagged)) for r in session.execute(query)]

    if not g_low:
        return run(s_low, s_high, False, limit)
    exact_low = f"{s_low}{KEY_SEPARATOR}{g_low}"
    exact_high = exact_low + "\U0010ffff"
    found = run(exact_low, exact_high, False, limit)
    if len(found) < limit:
        # Longer surnames: the character after the prefix is a letter or digit, above "!" (0x21).
        found += run(s_low + "!", s_high, True, limit - len(found))
    return found


def list_patrons(
    session: Session,
    *,
    status: str,
    origin: str,
    created_after: datetime | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Patron]:
    """Newest first, keyset-paged by (created_at, id) descending."""
    p = t.patrons.c
    query = select(t.patrons)
    if status:
        query = query.where(p.status == status)
    if origin:
        query = query.where(p.origin == origin)
    if created_after is not None:
        query = query.where(p.created_at >= created_after)
    if before is not None:
        at, last_id = before
        query = query.where((p.created_at < at) | and_(p.created_at == at, p.id < last_id))
    query = query.order_by(p.created_at.desc(), p.id.desc()).limit(limit)
    return [_patron(r) for r in session.execute(query)]


def flagged_patron_ids(session: Session, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    f = t.duplicate_flags.c
    rows = session.execute(select(f.patron_id).where(f.patron_id.in_(ids), f.dismissed_at.is_(None)))
    return {r.patron_id for r in rows}


def probable_duplicates(session: Session, p: Patron) -> list[DuplicateFlag]:
    """Same folded name and birth date, or same e-mail (case-insensitive)."""
    c = t.patrons.c
    found: list[DuplicateFlag] = []
    if p.birth_date is not None:
        rows = session.execute(
            select(c.id, c.surname, c.given_name).where(
                c.search_key == p.search_key, c.birth_date == p.birth_date, c.id != p.id
            )
        )
        found += [
            DuplicateFlag(r.id, f"{r.surname} {r.given_name}", "SAME_NAME_AND_BIRTH_DATE") for r in rows
        ]
    if p.email_key:
        rows = session.execute(
            select(c.id, c.surname, c.given_name).where(c.email_key == p.email_key, c.id != p.id)
        )
        found += [DuplicateFlag(r.id, f"{r.surname} {r.given_name}", "SAME_EMAIL") for r in rows]
    return found


def add_duplicate_flags(
    session: Session, patron_id: str, flags: Sequence[DuplicateFlag], now: datetime
) -> None:
    """Flags both records of each pair, so the operator sees it from either side."""
    f = t.duplicate_flags
    for flag in flags:
        for a, b in ((patron_id, flag.other_patron_id), (flag.other_patron_id, patron_id)):
            exists = session.execute(
                select(f.c.patron_id).where(
                    f.c.patron_id == a, f.c.other_patron_id == b, f.c.reason == flag.reason
                )
            ).first()
            if not exists:
                session.execute(
                    insert(f).values(patron_id=a, other_patron_id=b, reason=flag.reason, created_at=now)
                )


def open_duplicate_flags(session: Session, patron_id: str) -> list[DuplicateFlag]:
    f = t.duplicate_flags.c
    p = t.patrons.c
    rows = session.execute(
        select(f.other_patron_id, f.reason, p.surname, p.given_name)
        .join(t.patrons, p.id == f.other_patron_id)
        .where(f.patron_id == patron_id, f.dismissed_at.is_(None))
        .order_by(f.created_at, f.other_patron_id)
    )
    return [DuplicateFlag(r.other_patron_id, f"{r.surname} {r.given_name}", r.reason) for r in rows]


def dismiss_duplicate_flags(
    session: Session, patron_id: str, other_id: str, now: datetime, actor: str
) -> int:
    f = t.duplicate_flags.c
    result = session.execute(
        update(t.duplicate_flags)
        .where(
            f.dismissed_at.is_(None),
            ((f.patron_id == patron_id) & (f.other_patron_id == other_id))
            | ((f.patron_id == other_id) & (f.other_patron_id == patron_id)),
        )
        .values(dismissed_at=now, dismissed_by=actor)
    )
    return _rowcount(result)


def add_history(
    session: Session,
    patron_id: str,
    *,
    at: datetime,
    action: str,
    from_status: str | None,
    to_status: str,
    reason: str,
    actor: str,
) -> None:
    session.execute(
        insert(t.history).values(
            patron_id=patron_id,
            at=at,
            action=action,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            actor=actor,
        )
    )


def list_history(session: Session, patron_id: str, *, before_id: int | None, limit: int) -> list[Any]:
    h = t.history.c
    query = select(t.history).where(h.patron_id == patron_id)
    if before_id is not None:
        query = query.where(h.id < before_id)
    return list(session.execute(query.order_by(h.id.desc()).limit(limit)))


def record_card(
    session: Session, patron_id: str, barcode: str, rfid_uid: str, now: datetime, *, retire_reason: str = ""
) -> None:
    c = t.cards.c
    session.execute(
        update(t.cards)
        .where(c.patron_id == patron_id, c.retired_at.is_(None))
        .values(retired_at=now, retired_reason=retire_reason or "replaced")
    )
    session.execute(
        insert(t.cards).values(
            patron_id=patron_id, barcode=barcode, rfid_uid=rfid_uid or None, assigned_at=now
        )
    )


# --- rate limiting -------------------------------------------------------------------------------


def count_rate_events(session: Session, bucket: str, since: datetime) -> int:
    r = t.rate_events.c
    return int(
        session.execute(
            select(func.count()).select_from(t.rate_events).where(r.bucket == bucket, r.at >= since)
        ).scalar_one()
    )


def add_rate_event(session: Session, bucket: str, now: datetime, *, forget_before: datetime) -> None:
    r = t.rate_events.c
    session.execute(delete(t.rate_events).where(r.bucket == bucket, r.at < forget_before))
    session.execute(insert(t.rate_events).values(bucket=bucket, at=now))


# --- accounts, sessions, throttling --------------------------------------------------------------


def account_by_username(session: Session, username: str) -> Any | None:
    return session.execute(select(t.accounts).where(t.accounts.c.username == username)).first()


def account_by_subject(
    session: Session, kind: str, subject_id: str, *, for_update: bool = False
) -> Any | None:
    query = select(t.accounts).where(t.accounts.c.kind == kind, t.accounts.c.subject_id == subject_id)
    if for_update:
        query = lock_for_update(query, session)
    return session.execute(query).first()


def accounts_by_subjects(session: Session, kind: str, subject_ids: Sequence[str]) -> dict[str, Any]:
    if not subject_ids:
        return {}
    rows = session.execute(
        select(t.accounts).where(t.accounts.c.kind == kind, t.accounts.c.subject_id.in_(subject_ids))
    )
    return {r.subject_id: r for r in rows}


def username_taken(session: Session, username: str, *, except_account: str = "") -> bool:
    query = select(t.accounts.c.id).where(t.accounts.c.username == username)
    if except_account:
        query = query.where(t.accounts.c.id != except_account)
    return session.execute(query).first() is not None


def throttle_row(session: Session, key: str) -> Any | None:
    return session.execute(select(t.login_throttle).where(t.login_throttle.c.username_key == key)).first()


def save_throttle(
    session: Session, key: str, failures: int, last_failure_at: datetime | None, locked_until: datetime | None
) -> None:
    values = dict(failures=failures, last_failure_at=last_failure_at, locked_until=locked_until)
    result = session.execute(
        update(t.login_throttle).where(t.login_throttle.c.username_key == key).values(**values)
    )
    if _rowcount(result) == 0:
        session.execute(insert(t.login_throttle).values(username_key=key, **values))


def end_sessions(session: Session, account_id: str, now: datetime) -> None:
    s = t.sessions.c
    session.execute(
        update(t.sessions).where(s.account_id == account_id, s.ended_at.is_(None)).values(ended_at=now)
    )
