"""The device gateway's tables: an audit of what it wrote to tags (its own database)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table

from bibliodesk.runtime.outbox import add_runtime_tables
from bibliodesk.runtime.types import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

outbox, idempotency_keys = add_runtime_tables(metadata)

# One row per patron card successfully encoded and verified (failed attempts leave nothing).
card_encodings = Table(
    "card_encodings",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("request_id", String(200), nullable=False, default=""),
    Column("station_id", String(100), nullable=False),
    Column("device_id", String(100), nullable=False),
    Column("patron_barcode", String(32), nullable=False, index=True),
    Column("patron_id", String(64), nullable=False, default=""),
    Column("tag_uid", String(32), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("encoded_at", UtcDateTime, nullable=False),
    Column("encoded_by", String(200), nullable=False, default=""),
)

# One row per tag whose security was changed (or failed to change) at check-out / check-in.
security_changes = Table(
    "security_changes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("request_id", String(200), nullable=False, default=""),
    Column("station_id", String(100), nullable=False),
    Column("action", String(16), nullable=False),
    Column("tag_uid", String(32), nullable=False, index=True),
    Column("primary_id", String(32), nullable=False, default=""),
    Column("afi", Integer, nullable=False),
    Column("eas", Boolean, nullable=False),
    Column("afi_locked", Boolean, nullable=False, default=False),
    Column("error_reason", String(64), nullable=False, default=""),
    Column("changed_at", UtcDateTime, nullable=False),
    Column("changed_by", String(200), nullable=False, default=""),
)
