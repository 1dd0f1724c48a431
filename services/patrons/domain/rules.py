"""Field rules for patron data: each validator normalises one value or records a violation.

Every violation names the field as the client sent it (e.g. ``details.address.postal_code``), and all
bad fields are reported at once, so a web form can mark each wrong box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date

from bibliodesk.runtime.errors import Violations

from .names import tidy

NAME_MAX = 100
PLACE_MAX = 100
STREET_MAX = 200
EMAIL_MAX = 254
ZONE_MAX = 60
DOCUMENT_NUMBER_MAX = 30
REASON_MAX = 500
LANGUAGES = ("it", "en")

# Letters of any script, combining marks, spaces, apostrophes (straight and typographic), hyphens,
# dots: "D'Angelo", "Anna-Maria", "De Luca", "O’Neill", "Jr.".
_NAME = re.compile(r"^[^\W\d_](?:[^\W\d_]|[\u0300-\u036f '’\-.])*$")
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_PHONE_CHARS = re.compile(r"^\+?[0-9 ()/\-.]+$")
_BRANCH = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,15}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_PROVINCE = re.compile(r"^[A-Z]{2}$")
_DOCUMENT = re.compile(r"^[A-Z0-9][A-Z0-9 -]{1,28}[A-Z0-9]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Address:
    street: str = ""
    postal_code: str = ""
    city: str = ""
    province: str = ""
    country_code: str = "IT"

    def one_line(self) -> str:
        """ "Via Roma 12, 20121 Milano (MI)" (country added when not Italy)."""
        place = " ".join(p for p in (self.postal_code, self.city) if p)
        if self.province:
            place += f" ({self.province})"
        parts = [p for p in (self.street, place) if p]
        if self.country_code and self.country_code != "IT":
            parts.append(self.country_code)
        return ", ".join(parts)


@dataclass(frozen=True)
class Details:
    """The personal data of a patron as validated and stored."""

    given_name: str
    surname: str
    birth_date: date | None
    birth_place: str
    address: Address = field(default_factory=Address)
    email: str = ""
    phone: str = ""
    home_branch: str = ""
    language: str = "it"


def _clean(value: str) -> str:
    return tidy(value or "")


def _no_control(v: Violations, name: str, raw: str) -> bool:
    return v.check(not _CONTROL.search(raw or ""), name, "must not contain control characters")


def person_name(v: Violations, name: str, raw: str, *, required: bool = True) -> str:
    value = _clean(raw)
    if not value:
        if required:
            v.add(name, "is required", "REQUIRED")
        return ""
    if not _no_control(v, name, raw) or not v.max_length(name, value, NAME_MAX):
        return value
    v.check(
        bool(_NAME.match(value)), name, "must contain only letters, spaces, apostrophes, hyphens and dots"
    )
    return value


def birth_date(v: Violations, name: str, raw: str, today: date, *, required: bool = True) -> date | None:
    value = (raw or "").strip()
    if not value:
        if required:
            v.add(name, "is required", "REQUIRED")
        return None
    parsed = parse_date(v, name, value)
    if parsed is None:
        return None
    if parsed > today:
        v.add(name, "must not be in the future", "OUT_OF_RANGE")
        return None
    if parsed.year < today.year - 120:
        v.add(name, "is more than 120 years ago", "OUT_OF_RANGE")
        return None
    return parsed


def parse_date(v: Violations, name: str, raw: str) -> date | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw.strip()):
        v.add(name, "must be a date written YYYY-MM-DD", "BAD_FORMAT")
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        v.add(name, "is not a real calendar date", "BAD_FORMAT")
        return None


def place(v: Violations, name: str, raw: str, *, required: bool = True, limit: int = PLACE_MAX) -> str:
    value = _clean(raw)
    if not value:
        if required:
            v.add(name, "is required", "REQUIRED")
        return ""
    if _no_control(v, name, raw) and v.max_length(name, value, limit):
        v.check(any(ch.isalpha() for ch in value), name, "must contain letters")
    return value


def email(v: Violations, name: str, raw: str, *, required: bool = False) -> str:
    value = (raw or "").strip()
    if not value:
        if required:
            v.add(name, "is required", "REQUIRED")
        return ""
    if not v.max_length(name, value, EMAIL_MAX):
        return value
    if not _EMAIL.match(value) or ".." in value:
        v.add(name, "is not a valid e-mail address", "BAD_FORMAT")
        return value
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def phone(v: Violations, name: str, raw: str) -> str:
    value = _clean(raw)
    if not value:
        return ""
    digits = sum(ch.isdigit() for ch in value)
    if not v.max_length(name, value, 40):
        return value
    if not _PHONE_CHARS.match(value) or not 6 <= digits <= 15:
        v.add(
            name,
            "must be a phone number: 6–15 digits, optionally '+', spaces, '-', '/', '(', ')'",
            "BAD_FORMAT",
        )
    return value


def branch(
    v: Violations, name: str, raw: str, known: frozenset[str] = frozenset(), *, required: bool = False
) -> str:
    value = (raw or "").strip().upper()
    if not value:
        if required:
            v.add(name, "is required", "REQUIRED")
        return ""
    if not _BRANCH.match(value):
        v.add(name, "must be a branch code: 1–16 letters, digits, '_' or '-'", "BAD_FORMAT")
    elif known and value not in known:
        v.add(name, f"is not a branch of this library ({', '.join(sorted(known))})", "UNKNOWN_BRANCH")
    return value


def language(v: Violations, name: str, raw: str) -> str:
    value = (raw or "").strip().lower() or "it"
    v.check(value in LANGUAGES, name, "must be 'it' or 'en'", "UNSUPPORTED")
    return value


def country(v: Violations, name: str, raw: str, *, default: str = "") -> str:
    value = (raw or "").strip().upper() or default
    if value:
        v.check(
            bool(_COUNTRY.match(value)), name, "must be an ISO 3166-1 alpha-2 code such as IT", "BAD_FORMAT"
        )
    return value


def address(
    v: Violations,
    name: str,
    street: str,
    postal_code: str,
    city: str,
    province: str,
    country_code: str,
    *,
    required: bool = True,
) -> Address:
    country_value = country(v, f"{name}.country_code", country_code, default="IT")
    street_value = place(v, f"{name}.street", street, required=required, limit=STREET_MAX)
    city_value = place(v, f"{name}.city", city, required=required)
    code = (postal_code or "").strip().upper()
    if not code:
        if required:
            v.add(f"{name}.postal_code", "is required", "REQUIRED")
    elif country_value == "IT":
        v.check(
            bool(re.fullmatch(r"\d{5}", code)),
            f"{name}.postal_code",
            "must be five digits (CAP)",
            "BAD_FORMAT",
        )
    else:
        v.check(
            bool(re.fullmatch(r"[A-Z0-9][A-Z0-9 -]{1,10}", code)),
            f"{name}.postal_code",
            "is not a postal code",
            "BAD_FORMAT",
        )
    prov = (province or "").strip().upper()
    if prov:
        v.check(
            bool(_PROVINCE.match(prov)),
            f"{name}.province",
            "must be a two-letter province code",
            "BAD_FORMAT",
        )
    return Address(
        street=street_value, postal_code=code, city=city_value, province=prov, country_code=country_value
    )


def document_number(v: Violations, name: str, raw: str) -> str:
    value = (raw or "").strip().upper()
    if value:
        v.check(
            bool(_DOCUMENT.match(value)), name, "must be 3–30 letters, digits, spaces or '-'", "BAD_FORMAT"
        )
    return value


def zone(v: Violations, name: str, raw: str) -> str:
    value = _clean(raw)
    if value and _no_control(v, name, raw):
        v.max_length(name, value, ZONE_MAX)
    return value


def reason(v: Violations, name: str, raw: str) -> str:
    value = _clean(raw)
    if v.required(name, value) and _no_control(v, name, raw):
        v.max_length(name, value, REASON_MAX)
    return value


@dataclass(frozen=True)
class DetailsInput:
    """The raw form, as received."""

    given_name: str = ""
    surname: str = ""
    birth_date: str = ""
    birth_place: str = ""
    street: str = ""
    postal_code: str = ""
    city: str = ""
    province: str = ""
    country_code: str = ""
    email: str = ""
    phone: str = ""
    home_branch: str = ""
    language: str = ""


def validate_details(
    raw: DetailsInput,
    *,
    today: date,
    email_required: bool,
    branches: frozenset[str] = frozenset(),
    prefix: str = "details",
) -> Details:
    """Validates a pre-registration form (P1) or a desk record; raises naming every bad field."""
    v = Violations()
    p = f"{prefix}." if prefix else ""
    details = Details(
        given_name=person_name(v, f"{p}given_name", raw.given_name),
        surname=person_name(v, f"{p}surname", raw.surname),
        birth_date=birth_date(v, f"{p}birth_date", raw.birth_date, today),
        birth_place=place(v, f"{p}birth_place", raw.birth_place),
        address=address(
            v, f"{p}address", raw.street, raw.postal_code, raw.city, raw.province, raw.country_code
        ),
        email=email(v, f"{p}email", raw.email, required=email_required),
        phone=phone(v, f"{p}phone", raw.phone),
        home_branch=branch(v, f"{p}home_branch", raw.home_branch, branches),
        language=language(v, f"{p}language", raw.language),
    )
    if not email_required and not details.email and not details.phone and not v:
        v.add(f"{p}email", "an e-mail address or a phone number is required", "REQUIRED")
    v.raise_if_any()
    return details


__all__ = ["Address", "Details", "DetailsInput", "replace", "validate_details"]
