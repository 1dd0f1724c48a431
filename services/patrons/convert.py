"""Domain objects -> proto messages (and a few proto -> domain helpers). No rules here."""

from __future__ import annotations

from datetime import date
from typing import Any

from bibliodesk.patrons.v1 import patrons_pb2 as pb
from bibliodesk.runtime.pbtime import timestamp as ts

from .domain.categories import Category
from .domain.credentials import LABELS, CredentialsState
from .domain.patron import DocumentType, Origin, Patron, PatronStatus
from .domain.rules import DetailsInput

ORIGIN = {Origin.WEB: pb.PATRON_ORIGIN_WEB, Origin.DESK: pb.PATRON_ORIGIN_DESK}
ORIGIN_FROM_PB = {v: k.value for k, v in ORIGIN.items()}
STATUS = {
    PatronStatus.PRE_REGISTERED: pb.PATRON_STATUS_PRE_REGISTERED,
    PatronStatus.ENROLLED: pb.PATRON_STATUS_ENROLLED,
    PatronStatus.EXPIRED: pb.PATRON_STATUS_EXPIRED,
    PatronStatus.SUSPENDED: pb.PATRON_STATUS_SUSPENDED,
}
STATUS_FROM_PB = {v: k.value for k, v in STATUS.items()}
DOCUMENT = {d: getattr(pb, f"DOCUMENT_TYPE_{d.value}") for d in DocumentType}
DOCUMENT_FROM_PB = {v: k.value for k, v in DOCUMENT.items()}
CREDENTIALS = {
    CredentialsState.NONE: pb.CREDENTIALS_STATE_NONE,
    CredentialsState.TEMPORARY: pb.CREDENTIALS_STATE_TEMPORARY,
    CredentialsState.PATRON_DEFINED: pb.CREDENTIALS_STATE_PATRON_DEFINED,
}
DUPLICATE = {
    "SAME_NAME_AND_BIRTH_DATE": pb.DUPLICATE_REASON_SAME_NAME_AND_BIRTH_DATE,
    "SAME_EMAIL": pb.DUPLICATE_REASON_SAME_EMAIL,
}


def day(value: date | None) -> str:
    return value.isoformat() if value else ""


def details_input(d: pb.PatronDetails) -> DetailsInput:
    a = d.address
    return DetailsInput(
        given_name=d.given_name,
        surname=d.surname,
        birth_date=d.birth_date,
        birth_place=d.birth_place,
        street=a.street,
        postal_code=a.postal_code,
        city=a.city,
        province=a.province,
        country_code=a.country_code,
        email=d.email,
        phone=d.phone,
        home_branch=d.home_branch,
        language=d.language,
    )


def credentials_view(view: dict[str, Any] | None) -> pb.CredentialsView:
    if view is None:
        view = {"state": CredentialsState.NONE, "username": ""}
    state = view["state"]
    return pb.CredentialsView(
        state=CREDENTIALS[state],
        username=view.get("username", ""),
        temporary_expires_at=ts(view.get("temporary_expires_at")),
        defined_at=ts(view.get("defined_at")),
        last_login_at=ts(view.get("last_login_at")),
        locked=bool(view.get("locked")),
        label=LABELS[state],
    )


def patron(p: Patron, *, today: date, creds: dict[str, Any] | None = None, staff: bool = True) -> pb.Patron:
    a = p.address
    msg = pb.Patron(
        id=p.id,
        given_name=p.given_name,
        surname=p.surname,
        display_name=p.display_name,
        birth_date=day(p.birth_date),
        birth_place=p.birth_place,
        address=pb.Address(
            street=a.street,
            postal_code=a.postal_code,
            city=a.city,
            province=a.province,
            country_code=a.country_code,
        ),
        email=p.email,
        phone=p.phone,
        home_branch=p.home_branch,
        language=p.language,
        origin=ORIGIN[p.origin],
        status=STATUS[p.effective_status(today)],
        document_type=DOCUMENT[p.document_type] if p.document_type else pb.DOCUMENT_TYPE_UNSPECIFIED,
        document_number=p.document_number,
        zone=p.zone,
        nationality=p.nationality,
        category_code=p.category_code,
        card_barcode=p.card_barcode,
        rfid_uid=p.rfid_uid,
        enrollment_date=day(p.enrollment_date),
        enrollment_expiry_date=day(p.enrollment_expiry_date),
        privacy_consent=p.privacy_consent_time is not None,
        privacy_consent_time=ts(p.privacy_consent_time),
        credentials=credentials_view(creds),
        missing_for_enrollment=p.missing_for_enrollment() if p.status == PatronStatus.PRE_REGISTERED else [],
        create_time=ts(p.created_at),
        update_time=ts(p.updated_at),
        etag=p.etag(),
    )
    if staff:
        msg.possible_duplicates.extend(
            pb.DuplicateFlag(
                other_patron_id=f.other_patron_id,
                other_display_name=f.other_display_name,
                reason=DUPLICATE[f.reason],
            )
            for f in p.duplicate_flags
        )
    return msg


def hit(p: Patron, *, today: date, flagged: bool) -> pb.PatronSearchHit:
    return pb.PatronSearchHit(
        patron_id=p.id,
        display_name=p.display_name,
        birth_date=day(p.birth_date),
        birth_place=p.birth_place,
        address=p.address.one_line(),
        origin=ORIGIN[p.origin],
        status=STATUS[p.effective_status(today)],
        card_barcode=p.card_barcode,
        possible_duplicate=flagged,
        create_time=ts(p.created_at),
    )


def category(c: Category) -> pb.PatronCategory:
    return pb.PatronCategory(
        code=c.code,
        name=c.name,
        loan_limit=c.loan_limit,
        reservation_limit=c.reservation_limit,
        enrollment_period_months=c.enrollment_period_months,
        pickup_period_days=c.pickup_period_days,
        active=c.active,
        etag=c.etag(),
        create_time=ts(c.created_at),
        update_time=ts(c.updated_at),
    )


def category_from(msg: pb.PatronCategory) -> Category:
    return Category(
        code=msg.code,
        name=msg.name,
        loan_limit=msg.loan_limit,
        reservation_limit=msg.reservation_limit,
        enrollment_period_months=msg.enrollment_period_months,
        pickup_period_days=msg.pickup_period_days,
        active=msg.active,
    )


def patron_values(msg: pb.Patron) -> dict[str, str]:
    """Every updatable leaf of a Patron message as the raw string the rules validate."""
    a = msg.address
    return {
        "given_name": msg.given_name,
        "surname": msg.surname,
        "birth_date": msg.birth_date,
        "birth_place": msg.birth_place,
        "address.street": a.street,
        "address.postal_code": a.postal_code,
        "address.city": a.city,
        "address.province": a.province,
        "address.country_code": a.country_code,
        "email": msg.email,
        "phone": msg.phone,
        "home_branch": msg.home_branch,
        "language": msg.language,
        "document_type": DOCUMENT_FROM_PB.get(msg.document_type, "UNKNOWN") if msg.document_type else "",
        "document_number": msg.document_number,
        "zone": msg.zone,
        "nationality": msg.nationality,
    }
