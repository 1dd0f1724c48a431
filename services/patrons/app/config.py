"""Patrons settings, read once at start-up from ``BIBLIODESK_PATRONS_*`` (see the service README)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bibliodesk.runtime.settings import Settings, SettingsError

from ..domain.cards import CardRule
from ..domain.credentials import LockoutPolicy


@dataclass(frozen=True)
class PatronsConfig:
    card_rule: CardRule = field(default_factory=CardRule)
    #: Branch codes of the library; empty = any well-formed code is accepted.
    branches: frozenset[str] = frozenset()
    #: Pre-registrations accepted per client address per hour (P1 abuse protection).
    pre_registrations_per_hour: int = 5
    temporary_password_ttl: timedelta = timedelta(days=14)
    staff_token_ttl: timedelta = timedelta(hours=8)
    patron_token_ttl: timedelta = timedelta(hours=2)
    restricted_token_ttl: timedelta = timedelta(minutes=15)
    service_token_ttl: timedelta = timedelta(hours=1)
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    #: Failed log-ins accepted per client address per 15 minutes (password spraying across usernames).
    login_failures_per_address: int = 100
    #: Behind a reverse proxy: take the client address from X-Forwarded-For.
    trust_forwarded_for: bool = False
    #: argon2id cost; the defaults follow RFC 9106's second recommendation (64 MiB, t=3).
    argon2_memory_kib: int = 65536
    argon2_time_cost: int = 3
    #: Key deriving temporary passwords from their issue id (never stored with the data).
    credential_key: bytes = b""
    #: Where the library's name appears on the patron sheet.
    library_name: str = "Biblioteca"


def _int(settings: Settings, key: str, default: int) -> int:
    raw = settings.get(key, str(default))
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"BIBLIODESK_{key} must be an integer, got {raw!r}") from None


def _credential_key(settings: Settings) -> bytes:
    explicit = settings.get("PATRONS_CREDENTIAL_KEY")
    if explicit:
        return explicit.encode()
    path = Path(
        settings.get("PATRONS_CREDENTIAL_KEY_FILE") or settings.home / "keys" / "patrons-credentials.key"
    )
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def load_config(settings: Settings) -> PatronsConfig:
    try:
        rule = CardRule(
            check=settings.get("PATRONS_CARD_CHECK", "luhn").lower(),
            length=_int(settings, "PATRONS_CARD_LENGTH", 13),
            prefix=settings.get("PATRONS_CARD_PREFIX", "2"),
        )
    except ValueError as exc:
        raise SettingsError(f"BIBLIODESK_PATRONS_CARD_*: {exc}") from None
    branches = frozenset(b.strip().upper() for b in settings.get("BRANCHES").split(",") if b.strip())
    return PatronsConfig(
        card_rule=rule,
        branches=branches,
        pre_registrations_per_hour=_int(settings, "PATRONS_PRE_REGISTRATIONS_PER_HOUR", 5),
        temporary_password_ttl=timedelta(days=_int(settings, "PATRONS_TEMPORARY_PASSWORD_DAYS", 14)),
        staff_token_ttl=timedelta(seconds=settings.token_ttl_seconds),
        patron_token_ttl=timedelta(seconds=_int(settings, "PATRONS_PATRON_TOKEN_TTL_SECONDS", 7200)),
        lockout=LockoutPolicy(
            max_failures=_int(settings, "PATRONS_LOCKOUT_FAILURES", 5),
            lock_for=timedelta(minutes=_int(settings, "PATRONS_LOCKOUT_MINUTES", 15)),
        ),
        login_failures_per_address=_int(settings, "PATRONS_LOGIN_FAILURES_PER_ADDRESS", 100),
        trust_forwarded_for=settings.get("PATRONS_TRUST_FORWARDED_FOR", "").lower() in ("1", "true", "yes"),
        argon2_memory_kib=_int(settings, "PATRONS_ARGON2_MEMORY_KIB", 65536),
        argon2_time_cost=_int(settings, "PATRONS_ARGON2_TIME_COST", 3),
        credential_key=_credential_key(settings),
        library_name=settings.get("LIBRARY_NAME", "Biblioteca"),
    )
