"""Patron use cases (P1–P4, desk lookup, read models for other services, categories).

Each function runs inside one transaction (the caller passes the session) and raises domain errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from bibliodesk.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Violations,
)
from bibliodesk.runtime.types import new_id

from ..domain import rules
from ..domain.cards import normalize_rfid_uid
from ..domain.categories import EDITABLE, Category, check_code, check_fields
from ..domain.patron import DocumentType, Origin, Patron, PatronEvent, PatronStatus, transition
from ..store import repository as repo
from .config import PatronsConfig

#: Fields of UpdatePatron's mask (P3), by their proto path.
UPDATABLE = (
    "given_name",
    "surname",
    "birth_date",
    "birth_place",
    "address",
    "address.street",
    "address.postal_code",
    "address.city",
    "address.province",
    "address.country_code",
    "email",
    "phone",
    "home_branch",
    "language",
    "document_type",
    "document_number",
    "zone",
    "nationality",
)


@dataclass(frozen=True)
class Actor:
    """Who acts, for the history: a staff username, "web" or "patron"."""

    label: str


WEB = Actor("web")


def check_etag(v: Violations, etag: str) -> int:
    value = (etag or "").strip()
    if not value:
        v.add("etag", "is required: pass the etag of the record you read", "REQUIRED")
        return -1
    if not value.isdigit():
        v.add("etag", "is not an etag returned by this service", "BAD_FORMAT")
        return -1
    return int(value)


def _require_version(patron_version: int, expected: int, what: str = "patron record") -> None:
    from bibliodesk.runtime.errors import Aborted

    if patron_version != expected:
        raise Aborted(
            "ETAG_MISMATCH",
            f"the {what} changed since it was read; read it again and retry",
            metadata={"current_etag": str(patron_version)},
        )


# --- P1 pre-registration, desk creation ---------------------------------------------------------


def pre_register(
    session: Session, cfg: PatronsConfig, details: rules.Details, *, consent: bool, client: str, now: datetime
) -> Patron:
    if not consent:
        raise InvalidArgument(
            field="privacy_consent", description="the privacy notice must be accepted", reason="REQUIRED"
        )
    bucket = f"pre-register:{client}"
    window = timedelta(hours=1)
    if repo.count_rate_events(session, bucket, now - window) >= cfg.pre_registrations_per_hour:
        raise ResourceExhausted(
            "TOO_MANY_PRE_REGISTRATIONS",
            "too many pre-registrations from this address; try again later or come to the library",
            metadata={"retry_after_seconds": str(int(window.total_seconds()))},
        )
    repo.add_rate_event(session, bucket, now, forget_before=now - window)
    return _create(
        session,
        details,
        Origin.WEB,
        consent=True,
        now=now,
        actor=WEB,
        reason="pre-registered from home: to complete at the desk with an identity document",
    )


def create_at_desk(
    session: Session, details: rules.Details, *, consent: bool, now: datetime, actor: Actor
) -> Patron:
    return _create(
        session, details, Origin.DESK, consent=consent, now=now, actor=actor, reason="recorded at the desk"
    )


def _create(
    session: Session,
    d: rules.Details,
    origin: Origin,
    *,
    consent: bool,
    now: datetime,
    actor: Actor,
    reason: str,
) -> Patron:
    patron = Patron(
        id=new_id(),
        origin=origin,
        status=PatronStatus.PRE_REGISTERED,
        given_name=d.given_name,
        surname=d.surname,
        birth_date=d.birth_date,
        birth_place=d.birth_place,
        address=d.address,
        email=d.email,
        phone=d.phone,
        home_branch=d.home_branch,
        language=d.language,
        privacy_consent_time=now if consent else None,
        created_at=now,
        updated_at=now,
        version=1,
    )
    repo.insert_patron(session, patron)
    flags = repo.probable_duplicates(session, patron)
    repo.add_duplicate_flags(session, patron.id, flags, now)
    patron.duplicate_flags = list(flags)
    action = "pre_register" if origin == Origin.WEB else "create"
    repo.add_history(
        session,
        patron.id,
        at=now,
        action=action,
        from_status=None,
        to_status=patron.status.value,
        reason=reason,
        actor=actor.label,
    )
    return patron


# --- P3 complete the record ----------------------------------------------------------------------


def update(
    session: Session,
    cfg: PatronsConfig,
    patron_id: str,
    etag: str,
    paths: list[str],
    values: Mapping[str, str],
    *,
    today: date,
    now: datetime,
    actor: Actor,
) -> Patron:
    """Applies the masked changes. ``values`` holds the raw new value of every leaf path."""
    v = Violations()
    expected = check_etag(v, etag)
    if not paths:
        v.add("update_mask", "must name at least one field", "REQUIRED")
    for path in paths:
        if path not in UPDATABLE:
            v.add(
                "update_mask",
                f"{path!r} cannot be updated (allowed: {', '.join(UPDATABLE)})",
                "NOT_UPDATABLE",
            )
    v.raise_if_any()
    patron = repo.get_patron(session, patron_id, for_update=True)
    _require_version(patron.version, expected)
    leaves = set()
    for path in paths:
        if path == "address":
            leaves |= {
                "address.street",
                "address.postal_code",
                "address.city",
                "address.province",
                "address.country_code",
            }
        else:
            leaves.add(path)
    changed = _apply(patron, leaves, values, cfg, today)
    patron.version += 1
    patron.updated_at = now
    repo.save_patron(session, patron, expected)
    if leaves & {"given_name", "surname", "birth_date", "email"}:
        flags = repo.probable_duplicates(session, patron)
        repo.add_duplicate_flags(session, patron.id, flags, now)
        patron.duplicate_flags = repo.open_duplicate_flags(session, patron.id)
    repo.add_history(
        session,
        patron.id,
        at=now,
        action="update",
        from_status=patron.status.value,
        to_status=patron.status.value,
        reason="record updated: " + ", ".join(sorted(changed)),
        actor=actor.label,
    )
    return patron


def _apply(
    p: Patron, leaves: set[str], values: Mapping[str, str], cfg: PatronsConfig, today: date
) -> set[str]:
    v = Violations()
    pre = "patron."

    def val(name: str) -> str:
        return values.get(name, "")

    changes: dict[str, object] = {}
    if "given_name" in leaves:
        changes["given_name"] = rules.person_name(v, pre + "given_name", val("given_name"))
    if "surname" in leaves:
        changes["surname"] = rules.person_name(v, pre + "surname", val("surname"))
    if "birth_date" in leaves:
        changes["birth_date"] = rules.birth_date(v, pre + "birth_date", val("birth_date"), today)
    if "birth_place" in leaves:
        changes["birth_place"] = rules.place(v, pre + "birth_place", val("birth_place"))
    addr = {k.split(".", 1)[1] for k in leaves if k.startswith("address.")}
    if addr:
        a = p.address
        merged = {
            "street": val("address.street") if "street" in addr else a.street,
            "postal_code": val("address.postal_code") if "postal_code" in addr else a.postal_code,
            "city": val("address.city") if "city" in addr else a.city,
            "province": val("address.province") if "province" in addr else a.province,
            "country_code": val("address.country_code") if "country_code" in addr else a.country_code,
        }
        changes["address"] = rules.address(
            v,
            pre + "address",
            merged["street"],
            merged["postal_code"],
            merged["city"],
            merged["province"],
            merged["country_code"],
        )
    if "email" in leaves:
        changes["email"] = rules.email(v, pre + "email", val("email"))
    if "phone" in leaves:
        changes["phone"] = rules.phone(v, pre + "phone", val("phone"))
    if "home_branch" in leaves:
        changes["home_branch"] = rules.branch(v, pre + "home_branch", val("home_branch"), cfg.branches)
    if "language" in leaves:
        changes["language"] = rules.language(v, pre + "language", val("language"))
    if "document_type" in leaves:
        raw = val("document_type")
        if raw and raw not in DocumentType.__members__:
            v.add(pre + "document_type", "is not a known document type", "BAD_VALUE")
        changes["document_type"] = DocumentType(raw) if raw in DocumentType.__members__ else None
    if "document_number" in leaves:
        changes["document_number"] = rules.document_number(v, pre + "document_number", val("document_number"))
    if "zone" in leaves:
        changes["zone"] = rules.zone(v, pre + "zone", val("zone"))
    if "nationality" in leaves:
        changes["nationality"] = rules.country(v, pre + "nationality", val("nationality"))
    v.raise_if_any()
    for name, value in changes.items():
        setattr(p, name, value)
    return set(changes)


# --- P4 enrollment and cards ---------------------------------------------------------------------


def _assign_card(
    session: Session, cfg: PatronsConfig, patron: Patron, barcode: str, rfid_uid: str
) -> tuple[str, str]:
    v = Violations()
    card = ""
    if barcode:
        try:
            card = cfg.card_rule.normalize(barcode, field="card_barcode")
        except InvalidArgument as exc:
            v.items.extend(exc.violations)
    uid = ""
    if rfid_uid:
        try:
            uid = normalize_rfid_uid(rfid_uid, field="rfid_uid")
        except InvalidArgument as exc:
            v.items.extend(exc.violations)
    v.raise_if_any()
    if card and repo.card_in_use(session, barcode=card, except_patron=patron.id):
        raise AlreadyExists(
            "CARD_BARCODE_IN_USE",
            "this card barcode belongs to another patron",
            metadata={"card_barcode": card},
        )
    if uid and repo.card_in_use(session, rfid_uid=uid, except_patron=patron.id):
        raise AlreadyExists(
            "RFID_UID_IN_USE", "this RFID card belongs to another patron", metadata={"rfid_uid": uid}
        )
    if not card:
        for _ in range(20):
            candidate = cfg.card_rule.generate()
            if not repo.card_in_use(session, barcode=candidate):
                card = candidate
                break
        else:  # pragma: no cover - 10^11 numbers, 20 collisions in a row means a broken rule
            raise FailedPrecondition("CARD_NUMBERS_EXHAUSTED", "cannot generate a free card number")
    return card, uid


def validate_enrollment_input(
    cfg: PatronsConfig, category_code: str, barcode: str, rfid_uid: str, enrollment_date: str
) -> tuple[str, date | None]:
    v = Violations()
    code = check_code(v, "category_code", category_code)
    when = rules.parse_date(v, "enrollment_date", enrollment_date) if enrollment_date else None
    if barcode:
        try:
            cfg.card_rule.normalize(barcode, field="card_barcode")
        except InvalidArgument as exc:
            v.items.extend(exc.violations)
    if rfid_uid:
        try:
            normalize_rfid_uid(rfid_uid, field="rfid_uid")
        except InvalidArgument as exc:
            v.items.extend(exc.violations)
    v.raise_if_any()
    return code, when


def check_enrollable(session: Session, patron_id: str, category_code: str) -> None:
    """The checks of ``enroll`` that do not depend on the card (run before encoding an RFID card)."""
    patron = repo.get_patron(session, patron_id, with_flags=False)
    transition(patron.status, PatronEvent.ENROLL)
    patron.require_complete()
    repo.get_category(session, category_code.strip().upper()).require_active()


def enroll(
    session: Session,
    cfg: PatronsConfig,
    patron_id: str,
    etag: str,
    category_code: str,
    barcode: str,
    rfid_uid: str,
    enrollment_date: str,
    *,
    today: date,
    now: datetime,
    actor: Actor,
) -> Patron:
    v = Violations()
    expected = check_etag(v, etag)
    v.raise_if_any()
    code, when = validate_enrollment_input(cfg, category_code, barcode, rfid_uid, enrollment_date)
    patron = repo.get_patron(session, patron_id, for_update=True)
    _require_version(patron.version, expected)
    step = transition(patron.status, PatronEvent.ENROLL)
    patron.require_complete()
    category = repo.get_category(session, code)
    category.require_active()
    card, uid = _assign_card(session, cfg, patron, barcode, rfid_uid)
    start = when or today
    patron.status = step.target
    patron.category_code = category.code
    patron.card_barcode = card
    patron.rfid_uid = uid
    patron.enrollment_date = start
    patron.enrollment_expiry_date = category.expiry_for(start)
    patron.version += 1
    patron.updated_at = now
    repo.save_patron(session, patron, expected)
    repo.record_card(session, patron.id, card, uid, now)
    repo.add_history(
        session,
        patron.id,
        at=now,
        action="enroll",
        from_status=step.source.value,
        to_status=step.target.value,
        reason=f"{step.reason} (category {category.code}, card {card}, valid until "
        f"{patron.enrollment_expiry_date.isoformat()})",
        actor=actor.label,
    )
    return patron


def replace_card(
    session: Session,
    cfg: PatronsConfig,
    patron_id: str,
    etag: str,
    barcode: str,
    rfid_uid: str,
    reason: str,
    *,
    now: datetime,
    actor: Actor,
) -> Patron:
    v = Violations()
    expected = check_etag(v, etag)
    why = rules.reason(v, "reason", reason)
    v.raise_if_any()
    patron = repo.get_patron(session, patron_id, for_update=True)
    _require_version(patron.version, expected)
    if patron.status not in (PatronStatus.ENROLLED, PatronStatus.SUSPENDED):
        raise FailedPrecondition("NOT_ENROLLED", "only an enrolled patron has a card to replace")
    card, uid = _assign_card(session, cfg, patron, barcode, rfid_uid)
    if card == patron.card_barcode:
        raise FailedPrecondition("SAME_CARD", "the new card must differ from the current one")
    old = patron.card_barcode
    patron.card_barcode, patron.rfid_uid = card, uid
    patron.version += 1
    patron.updated_at = now
    repo.save_patron(session, patron, expected)
    repo.record_card(session, patron.id, card, uid, now, retire_reason=why)
    repo.add_history(
        session,
        patron.id,
        at=now,
        action="replace_card",
        from_status=patron.status.value,
        to_status=patron.status.value,
        reason=f"card {old} replaced by {card}: {why}",
        actor=actor.label,
    )
    return patron


def change_status(
    session: Session, patron_id: str, event: PatronEvent, reason: str, *, now: datetime, actor: Actor
) -> Patron:
    v = Violations()
    why = rules.reason(v, "reason", reason)
    v.raise_if_any()
    patron = repo.get_patron(session, patron_id, for_update=True)
    step = transition(patron.status, event)
    expected = patron.version
    patron.status = step.target
    patron.version += 1
    patron.updated_at = now
    repo.save_patron(session, patron, expected)
    repo.add_history(
        session,
        patron.id,
        at=now,
        action=event.value.lower(),
        from_status=step.source.value,
        to_status=step.target.value,
        reason=f"{step.reason}: {why}",
        actor=actor.label,
    )
    return patron


def dismiss_duplicate(
    session: Session, patron_id: str, other_id: str, *, now: datetime, actor: Actor
) -> Patron:
    v = Violations()
    v.required("other_patron_id", other_id)
    v.raise_if_any()
    repo.get_patron(session, patron_id)
    if repo.dismiss_duplicate_flags(session, patron_id, other_id, now, actor.label) == 0:
        from bibliodesk.runtime.errors import NotFound

        raise NotFound("FLAG_NOT_FOUND", "no open duplicate flag between these patrons")
    patron = repo.get_patron(session, patron_id)
    repo.add_history(
        session,
        patron_id,
        at=now,
        action="dismiss_duplicate",
        from_status=patron.status.value,
        to_status=patron.status.value,
        reason=f"checked by the operator: not the same person as {other_id}",
        actor=actor.label,
    )
    return patron


# --- categories ----------------------------------------------------------------------------------


def create_category(session: Session, c: Category, *, now: datetime) -> Category:
    v = Violations()
    code = check_code(v, "category.code", c.code)
    name = check_fields(
        v,
        "category",
        name=c.name,
        loan_limit=c.loan_limit,
        reservation_limit=c.reservation_limit,
        enrollment_period_months=c.enrollment_period_months,
        pickup_period_days=c.pickup_period_days,
    )
    v.raise_if_any()
    if repo.find_category(session, code) is not None:
        raise AlreadyExists(
            "CATEGORY_EXISTS", f"category {code} already exists", metadata={"category_code": code}
        )
    category = replace(c, code=code, name=name, version=1, created_at=now, updated_at=now)
    repo.insert_category(session, category)
    return category


def update_category(session: Session, c: Category, paths: list[str], etag: str, *, now: datetime) -> Category:
    v = Violations()
    expected = check_etag(v, etag)
    if not paths:
        v.add("update_mask", "must name at least one field", "REQUIRED")
    for path in paths:
        if path not in EDITABLE:
            v.add(
                "update_mask", f"{path!r} cannot be updated (allowed: {', '.join(EDITABLE)})", "NOT_UPDATABLE"
            )
    name = check_fields(
        v,
        "category",
        name=c.name,
        loan_limit=c.loan_limit,
        reservation_limit=c.reservation_limit,
        enrollment_period_months=c.enrollment_period_months,
        pickup_period_days=c.pickup_period_days,
        only=tuple(paths),
    )
    v.raise_if_any()
    current = repo.get_category(session, (c.code or "").strip().upper(), for_update=True)
    _require_version(current.version, expected, "category")
    changes = {p: (name if p == "name" else getattr(c, p)) for p in paths}
    updated = replace(current, **changes, version=current.version + 1, updated_at=now)  # type: ignore[arg-type]
    repo.update_category(session, updated, expected)
    return updated
