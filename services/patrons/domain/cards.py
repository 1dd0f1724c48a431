"""Patron cards: the barcode with the library's check-digit rule, and the RFID card UID (P4, D1, D2).

Libraries print card numbers with a check digit so a misread scan or a typo is caught at the desk.
The rule is configured per library: ``luhn`` (mod 10, as on most library and payment cards),
``ean`` (mod 10 with weights 3/1, as on EAN-13 and many Italian library cards) or ``none``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from bibliodesk.runtime.errors import InvalidArgument

RULES = ("luhn", "ean", "none")
_FREE_FORM = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,30}[A-Z0-9]$")
_HEX = re.compile(r"^[0-9A-F]+$")


def luhn_check_digit(payload: str) -> str:
    """The Luhn digit that makes ``payload + digit`` valid."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def ean_check_digit(payload: str) -> str:
    """The mod-10 weight-3/1 digit (EAN/UPC family); the digit next to the check weighs 3."""
    total = sum(int(ch) * (3 if i % 2 == 0 else 1) for i, ch in enumerate(reversed(payload)))
    return str((10 - total % 10) % 10)


@dataclass(frozen=True)
class CardRule:
    """How this library's card barcodes look."""

    #: "luhn", "ean" or "none".
    check: str = "luhn"
    #: Total length including the check digit (digit rules); 0 = any length from 6 to 20.
    length: int = 13
    #: Prefix of generated numbers (digits), e.g. "2" for patron cards.
    prefix: str = "2"

    def __post_init__(self) -> None:
        if self.check not in RULES:
            raise ValueError(f"card check rule must be one of {', '.join(RULES)}, got {self.check!r}")
        if self.length and not 6 <= self.length <= 20:
            raise ValueError("card length must be between 6 and 20")
        if not self.prefix.isdigit() and self.prefix:
            raise ValueError("card prefix must be digits")
        if self.length and len(self.prefix) >= self.length - 4:
            raise ValueError("card prefix too long for the card length")

    def _digit(self, payload: str) -> str:
        return luhn_check_digit(payload) if self.check == "luhn" else ean_check_digit(payload)

    def normalize(self, raw: str, field: str = "card_barcode") -> str:
        """The barcode as stored, or INVALID_ARGUMENT naming ``field`` with what is wrong."""
        value = raw.strip().upper().replace(" ", "")
        if self.check == "none":
            if not _FREE_FORM.match(value):
                raise InvalidArgument(
                    field=field, description="must be 4–32 letters, digits or '-'", reason="BAD_FORMAT"
                )
            return value
        if not value.isdigit():
            raise InvalidArgument(field=field, description="must contain digits only", reason="BAD_FORMAT")
        if self.length and len(value) != self.length:
            raise InvalidArgument(
                field=field, description=f"must be {self.length} digits long", reason="BAD_LENGTH"
            )
        if not self.length and not 6 <= len(value) <= 20:
            raise InvalidArgument(field=field, description="must be 6–20 digits long", reason="BAD_LENGTH")
        if self._digit(value[:-1]) != value[-1]:
            raise InvalidArgument(
                field=field,
                description=f"check digit is wrong ({self.check} rule): misread or mistyped card number",
                reason="BAD_CHECK_DIGIT",
            )
        return value

    def generate(self, seed: bytes | None = None) -> str:
        """A fresh card number following the rule (the store checks it is unused). With ``seed`` the
        number is derived from it, so a retried request picks the same number."""
        length = self.length or 13
        body_len = length - len(self.prefix) - (0 if self.check == "none" else 1)
        if seed is None:
            body = "".join(secrets.choice("0123456789") for _ in range(body_len))
        else:
            digits = str(int.from_bytes(hashlib.sha256(seed).digest(), "big"))
            body = digits[-body_len:].rjust(body_len, "0")
        payload = self.prefix + body
        return payload if self.check == "none" else payload + self._digit(payload)


def normalize_rfid_uid(raw: str, field: str = "rfid_uid") -> str:
    """An RFID UID as upper-case hex without separators; ISO 15693 UIDs are 8 bytes (16 hex)."""
    value = re.sub(r"[\s:\-]", "", raw).upper()
    if not value or not _HEX.match(value) or len(value) % 2:
        raise InvalidArgument(
            field=field, description="must be hexadecimal bytes, e.g. E004015012345678", reason="BAD_FORMAT"
        )
    if not 8 <= len(value) <= 20:
        raise InvalidArgument(
            field=field, description="must be 4–10 bytes (8–20 hex digits)", reason="BAD_LENGTH"
        )
    return value
