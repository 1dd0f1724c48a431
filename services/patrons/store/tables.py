"""The patrons database. Only the patrons service reads or writes these tables."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from bibliodesk.runtime.outbox import add_runtime_tables
from bibliodesk.runtime.types import BigIntPK, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)
outbox, idempotency_keys = add_runtime_tables(metadata)

# Search keys are compared by code point: the prefix range [key, key + U+10FFFF) must cover exactly
# the keys starting with the prefix. PostgreSQL's locale collations ignore spaces and punctuation at
# the first level, so the key columns use the "C" collation there (SQLite compares bytes already).
SearchKey = String(240).with_variant(String(240, collation="C"), "postgresql")

categories = Table(
    "patron_categories",
    metadata,
    Column("code", String(20), primary_key=True),
    Column("name", String(80), nullable=False),
    Column("loan_limit", Integer, nullable=False),
    Column("reservation_limit", Integer, nullable=False),
    Column("enrollment_period_months", Integer, nullable=False),
    Column("pickup_period_days", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

patrons = Table(
    "patrons",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("origin", String(10), nullable=False),
    Column("status", String(20), nullable=False),
    Column("given_name", String(100), nullable=False),
    Column("surname", String(100), nullable=False),
    Column("search_key", SearchKey, nullable=False),
    Column("given_key", SearchKey, nullable=False),
    Column("birth_date", Date, nullable=True),
    Column("birth_place", String(100), nullable=False),
    Column("street", String(200), nullable=False),
    Column("postal_code", String(12), nullable=False),
    Column("city", String(100), nullable=False),
    Column("province", String(2), nullable=False),
    Column("country_code", String(2), nullable=False),
    Column("email", String(254), nullable=False),
    Column("email_key", String(254), nullable=True),
    Column("phone", String(40), nullable=False),
    Column("home_branch", String(16), nullable=False),
    Column("language", String(2), nullable=False),
    Column("document_type", String(20), nullable=True),
    Column("document_number", String(30), nullable=False),
    Column("zone", String(60), nullable=False),
    Column("nationality", String(2), nullable=False),
    Column("category_code", String(20), ForeignKey("patron_categories.code"), nullable=True),
    Column("card_barcode", String(32), nullable=True, unique=True),
    Column("rfid_uid", String(20), nullable=True, unique=True),
    Column("enrollment_date", Date, nullable=True),
    Column("enrollment_expiry_date", Date, nullable=True),
    Column("privacy_consent_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    # Desk search (P2): prefix range on the surname-first key, keyset-paged by (search_key, id).
    Index("ix_patrons_search", "search_key", "id"),
    Index("ix_patrons_email_key", "email_key"),
    # The desk's worklist (ListPatrons): by status, newest first.
    Index("ix_patrons_status_created", "status", "created_at", "id"),
)

duplicate_flags = Table(
    "patron_duplicate_flags",
    metadata,
    Column("patron_id", String(36), ForeignKey("patrons.id"), primary_key=True),
    Column("other_patron_id", String(36), ForeignKey("patrons.id"), primary_key=True),
    Column("reason", String(40), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("dismissed_at", UtcDateTime, nullable=True),
    Column("dismissed_by", String(100), nullable=True),
)

history = Table(
    "patron_history",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("patron_id", String(36), ForeignKey("patrons.id"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("action", String(40), nullable=False),
    Column("from_status", String(20), nullable=True),
    Column("to_status", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(100), nullable=False),
    Index("ix_patron_history_patron", "patron_id", "id"),
)

cards = Table(
    "patron_cards",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("patron_id", String(36), ForeignKey("patrons.id"), nullable=False),
    Column("barcode", String(32), nullable=False),
    Column("rfid_uid", String(20), nullable=True),
    Column("assigned_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
    Column("retired_reason", String(500), nullable=True),
    Index("ix_patron_cards_patron", "patron_id"),
)

staff = Table(
    "staff_accounts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("display_name", String(100), nullable=False),
    Column("roles", String(100), nullable=False),  # comma-separated: admin,operator
    Column("branch", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
)

# Log-in credentials of patrons and staff. One namespace of usernames for both.
accounts = Table(
    "accounts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(10), nullable=False),  # patron | staff
    Column("subject_id", String(36), nullable=False),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("state", String(20), nullable=False),  # TEMPORARY | PATRON_DEFINED (staff: DEFINED)
    Column("issue_id", String(36), nullable=True),
    Column("temporary_expires_at", UtcDateTime, nullable=True),
    Column("defined_at", UtcDateTime, nullable=True),
    Column("last_login_at", UtcDateTime, nullable=True),
    Column("token_version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("kind", "subject_id"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False),
    Column("token_version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Index("ix_sessions_account", "account_id"),
)

login_throttle = Table(
    "login_throttle",
    metadata,
    Column("username_key", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure_at", UtcDateTime, nullable=True),
    Column("locked_until", UtcDateTime, nullable=True),
)

# Public-endpoint abuse protection (P1): one row per accepted call, counted per client address.
rate_events = Table(
    "rate_events",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("bucket", String(120), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_rate_events_bucket_at", "bucket", "at"),
)
