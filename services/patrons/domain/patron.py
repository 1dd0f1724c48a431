"""The patron record and its enrollment life cycle (P1–P4), as an explicit state machine.

    PRE_REGISTERED --enroll--> ENROLLED --suspend--> SUSPENDED --reinstate--> ENROLLED
    ENROLLED --renew--> ENROLLED

EXPIRED is not stored: an ENROLLED (or SUSPENDED) patron whose enrollment expiry date has passed is
shown as EXPIRED (``effective_status``), so no nightly job is needed to keep statuses right.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime

from bibliodesk.runtime.errors import FailedPrecondition, FieldViolation

from .names import display_name, fold, search_key
from .rules import Address

SEARCH_KEY_MAX = 240


class Origin(enum.StrEnum):
    WEB = "WEB"
    DESK = "DESK"


class PatronStatus(enum.StrEnum):
    PRE_REGISTERED = "PRE_REGISTERED"
    ENROLLED = "ENROLLED"
    SUSPENDED = "SUSPENDED"
    #: Derived, never stored: see ``effective_status``.
    EXPIRED = "EXPIRED"


class PatronEvent(enum.StrEnum):
    ENROLL = "ENROLL"
    RENEW = "RENEW"
    SUSPEND = "SUSPEND"
    REINSTATE = "REINSTATE"


class DocumentType(enum.StrEnum):
    IDENTITY_CARD = "IDENTITY_CARD"
    PASSPORT = "PASSPORT"
    DRIVING_LICENCE = "DRIVING_LICENCE"
    RESIDENCE_PERMIT = "RESIDENCE_PERMIT"
    OTHER = "OTHER"


@dataclass(frozen=True)
class Transition:
    source: PatronStatus
    event: PatronEvent
    target: PatronStatus
    #: Why the transition exists, in the library's words (shown in the patron's history).
    reason: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition(
        PatronStatus.PRE_REGISTERED,
        PatronEvent.ENROLL,
        PatronStatus.ENROLLED,
        "enrolled at the desk: identity checked, category and card assigned",
    ),
    Transition(
        PatronStatus.ENROLLED,
        PatronEvent.RENEW,
        PatronStatus.ENROLLED,
        "enrollment renewed for another period of the category",
    ),
    Transition(
        PatronStatus.ENROLLED,
        PatronEvent.SUSPEND,
        PatronStatus.SUSPENDED,
        "suspended by staff: no new loans or reservations",
    ),
    Transition(
        PatronStatus.SUSPENDED, PatronEvent.REINSTATE, PatronStatus.ENROLLED, "suspension lifted by staff"
    ),
)
_TABLE = {(t.source, t.event): t for t in TRANSITIONS}


def transition(source: PatronStatus, event: PatronEvent) -> Transition:
    """The transition for ``event`` from ``source``, or FAILED_PRECONDITION explaining why not."""
    found = _TABLE.get((source, event))
    if found is None:
        allowed = sorted(t.event.value for t in TRANSITIONS if t.source == source)
        reason = {
            (PatronStatus.ENROLLED, PatronEvent.ENROLL): "ALREADY_ENROLLED",
            (PatronStatus.SUSPENDED, PatronEvent.ENROLL): "ALREADY_ENROLLED",
        }.get(
            (source, event), "INVALID_TRANSITION" if source != PatronStatus.PRE_REGISTERED else "NOT_ENROLLED"
        )
        raise FailedPrecondition(
            reason,
            f"cannot {event.value.lower()} a patron who is {source.value.lower().replace('_', '-')}",
            metadata={"status": source.value, "event": event.value, "allowed": ",".join(allowed)},
        )
    return found


#: What the desk must record before enrolling (P3 → P4), in the order the form shows them.
ENROLLMENT_REQUIRED: tuple[str, ...] = (
    "given_name",
    "surname",
    "birth_date",
    "birth_place",
    "address.street",
    "address.postal_code",
    "address.city",
    "document_type",
    "document_number",
    "nationality",
)


@dataclass
class Patron:
    """A patron record. Dates are library calendar dates; instants are UTC."""

    id: str
    origin: Origin
    status: PatronStatus
    given_name: str
    surname: str
    birth_date: date | None
    birth_place: str
    address: Address
    email: str = ""
    phone: str = ""
    home_branch: str = ""
    language: str = "it"
    document_type: DocumentType | None = None
    document_number: str = ""
    zone: str = ""
    nationality: str = ""
    category_code: str = ""
    card_barcode: str = ""
    rfid_uid: str = ""
    enrollment_date: date | None = None
    enrollment_expiry_date: date | None = None
    privacy_consent_time: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1
    duplicate_flags: list[DuplicateFlag] = field(default_factory=list)

    @property
    def display_name(self) -> str:
        return display_name(self.surname, self.given_name)

    @property
    def search_key(self) -> str:
        # Folding may lengthen a name (ligatures); a prefix of the key keeps its meaning.
        return search_key(self.surname, self.given_name)[:SEARCH_KEY_MAX]

    @property
    def given_key(self) -> str:
        return fold(self.given_name)[:SEARCH_KEY_MAX]

    @property
    def email_key(self) -> str:
        return self.email.casefold()

    def missing_for_enrollment(self) -> list[str]:
        values = {
            "given_name": self.given_name,
            "surname": self.surname,
            "birth_date": self.birth_date,
            "birth_place": self.birth_place,
            "address.street": self.address.street,
            "address.postal_code": self.address.postal_code,
            "address.city": self.address.city,
            "document_type": self.document_type,
            "document_number": self.document_number,
            "nationality": self.nationality,
        }
        return [name for name in ENROLLMENT_REQUIRED if not values[name]]

    def require_complete(self) -> None:
        missing = self.missing_for_enrollment()
        if missing:
            raise FailedPrecondition(
                "ENROLLMENT_INCOMPLETE",
                "the record is incomplete; complete it first (P3): missing " + ", ".join(missing),
                metadata={"missing_fields": ",".join(missing)},
                violations=[
                    FieldViolation(name, "is required for enrollment", "REQUIRED") for name in missing
                ],
            )

    def effective_status(self, today: date) -> PatronStatus:
        if (
            self.status in (PatronStatus.ENROLLED, PatronStatus.SUSPENDED)
            and self.enrollment_expiry_date is not None
            and self.enrollment_expiry_date < today
        ):
            return PatronStatus.EXPIRED
        return self.status

    def etag(self) -> str:
        return str(self.version)


@dataclass(frozen=True)
class DuplicateFlag:
    other_patron_id: str
    other_display_name: str
    reason: str  # SAME_NAME_AND_BIRTH_DATE | SAME_EMAIL


SAME_NAME_AND_BIRTH_DATE = "SAME_NAME_AND_BIRTH_DATE"
SAME_EMAIL = "SAME_EMAIL"


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months; 31 Jan + 1 month = 28/29 Feb."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")
