"""Patron categories ("profili utente", P4): limits and periods chosen by an admin."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from bibliodesk.runtime.errors import FailedPrecondition, Violations

from .names import tidy
from .patron import add_months

_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,19}$")
EDITABLE = (
    "name",
    "loan_limit",
    "reservation_limit",
    "enrollment_period_months",
    "pickup_period_days",
    "active",
)


@dataclass
class Category:
    code: str
    name: str
    loan_limit: int
    reservation_limit: int
    enrollment_period_months: int
    pickup_period_days: int
    active: bool = True
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def etag(self) -> str:
        return str(self.version)

    def expiry_for(self, enrollment_date: date) -> date:
        """The last day the enrollment is valid."""
        return add_months(enrollment_date, self.enrollment_period_months)

    def require_active(self) -> None:
        if not self.active:
            raise FailedPrecondition(
                "CATEGORY_INACTIVE",
                f"category {self.code} is no longer in use",
                metadata={"category_code": self.code},
            )


def check_code(v: Violations, field: str, raw: str) -> str:
    value = (raw or "").strip().upper()
    if v.required(field, value):
        v.check(bool(_CODE.match(value)), field, "must be 1–20 letters, digits, '_' or '-'", "BAD_FORMAT")
    return value


def check_fields(
    v: Violations,
    prefix: str,
    *,
    name: str,
    loan_limit: int,
    reservation_limit: int,
    enrollment_period_months: int,
    pickup_period_days: int,
    only: tuple[str, ...] = EDITABLE,
) -> str:
    """Validates the editable fields named in ``only``; returns the tidied name."""
    clean = tidy(name or "")
    if "name" in only and v.required(f"{prefix}.name", clean):
        v.max_length(f"{prefix}.name", clean, 80)
    if "loan_limit" in only:
        v.check(0 <= loan_limit <= 999, f"{prefix}.loan_limit", "must be between 0 and 999", "OUT_OF_RANGE")
    if "reservation_limit" in only:
        v.check(
            0 <= reservation_limit <= 999,
            f"{prefix}.reservation_limit",
            "must be between 0 and 999",
            "OUT_OF_RANGE",
        )
    if "enrollment_period_months" in only:
        v.check(
            1 <= enrollment_period_months <= 120,
            f"{prefix}.enrollment_period_months",
            "must be between 1 and 120 months",
            "OUT_OF_RANGE",
        )
    if "pickup_period_days" in only:
        v.check(
            1 <= pickup_period_days <= 60,
            f"{prefix}.pickup_period_days",
            "must be between 1 and 60 days",
            "OUT_OF_RANGE",
        )
    return clean
