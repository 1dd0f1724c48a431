"""The reservations service's tables. Constraints, not just code, keep the queue sound:

- one open loan per copy, at most one READY_FOR_PICKUP reservation per copy;
- one active reservation per (copy, patron);
- queue positions unique per copy among WAITING_FOR_RETURN reservations, and present exactly for
  those (a CHECK), so positions cannot collide; the aggregate renumbers 1..n under the item's lock.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
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
    text,
)

from bibliodesk.runtime.outbox import add_runtime_tables
from bibliodesk.runtime.types import BigIntPK, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

items = Table(
    "items",
    metadata,
    Column("barcode", String(64), primary_key=True),
    Column("title", String(500), nullable=False),
    Column("author", String(300), nullable=False, default=""),
    Column("branch", String(64), nullable=False),
    Column("call_number", String(64), nullable=False, default=""),
    Column("state", String(20), nullable=False),
    Column("state_reason", String(40), nullable=False, default=""),
    Column("set_aside_for", String(36), nullable=True),
    Column("version", Integer, nullable=False, default=1),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("state IN ('ON_SHELF', 'ON_LOAN', 'SET_ASIDE')", name="state"),
    CheckConstraint(
        "(state = 'SET_ASIDE' AND set_aside_for IS NOT NULL) "
        "OR (state <> 'SET_ASIDE' AND set_aside_for IS NULL)",
        name="set_aside_for",
    ),
    Index("ix_items_branch_state", "branch", "state"),
)

loans = Table(
    "loans",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("item_barcode", String(64), ForeignKey("items.barcode"), nullable=False),
    Column("patron_id", String(64), nullable=False),
    Column("patron_card_barcode", String(64), nullable=False, default=""),
    Column("checked_out_at", UtcDateTime, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("branch", String(64), nullable=False),
    Column("reservation_id", String(36), nullable=True),
    Column("returned_at", UtcDateTime, nullable=True),
    Column("returned_branch", String(64), nullable=False, default=""),
    Index("ix_loans_patron_open", "patron_id", "returned_at"),
    Index(
        "uq_loans_one_open_per_item",
        "item_barcode",
        unique=True,
        postgresql_where=text("returned_at IS NULL"),
        sqlite_where=text("returned_at IS NULL"),
    ),
)

ACTIVE_SQL = "status IN ('WAITING_FOR_RETURN', 'READY_FOR_PICKUP')"

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patron_id", String(64), nullable=False),
    Column("item_barcode", String(64), ForeignKey("items.barcode"), nullable=False),
    Column("pickup_branch", String(64), nullable=False),
    Column("origin", String(20), nullable=False),
    Column("status", String(30), nullable=False),
    Column("status_reason", String(40), nullable=False, default=""),
    Column("queue_seq", Integer, nullable=False),
    Column("queue_position", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("ready_at", UtcDateTime, nullable=True),
    Column("called_at", UtcDateTime, nullable=True),
    Column("notified_at", UtcDateTime, nullable=True),
    Column("pickup_deadline", UtcDateTime, nullable=True),
    Column("auto_expire", Boolean, nullable=False, default=True),
    Column("fetched_at", UtcDateTime, nullable=True),
    Column("reminded_at", UtcDateTime, nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("note", Text, nullable=False, default=""),
    Column("patron_card_barcode", String(64), nullable=False, default=""),
    Column("pickup_period_days", Integer, nullable=False, default=7),
    Column("version", Integer, nullable=False, default=1),
    UniqueConstraint("item_barcode", "queue_seq"),
    CheckConstraint(
        "status IN ('WAITING_FOR_RETURN', 'READY_FOR_PICKUP', 'FULFILLED', 'EXPIRED', 'CANCELLED')",
        name="status",
    ),
    CheckConstraint("origin IN ('WEB', 'DESK', 'SELF_CHECK')", name="origin"),
    CheckConstraint(
        "(status = 'WAITING_FOR_RETURN' AND queue_position IS NOT NULL) "
        "OR (status <> 'WAITING_FOR_RETURN' AND queue_position IS NULL)",
        name="queue_position",
    ),
    Index(
        "uq_reservations_queue_position",
        "item_barcode",
        "queue_position",
        unique=True,
        postgresql_where=text("status = 'WAITING_FOR_RETURN'"),
        sqlite_where=text("status = 'WAITING_FOR_RETURN'"),
    ),
    Index(
        "uq_reservations_one_ready_per_item",
        "item_barcode",
        unique=True,
        postgresql_where=text("status = 'READY_FOR_PICKUP'"),
        sqlite_where=text("status = 'READY_FOR_PICKUP'"),
    ),
    Index(
        "uq_reservations_one_active_per_patron_item",
        "item_barcode",
        "patron_id",
        unique=True,
        postgresql_where=text(ACTIVE_SQL),
        sqlite_where=text(ACTIVE_SQL),
    ),
    Index("ix_reservations_patron_status", "patron_id", "status"),
    Index("ix_reservations_status_deadline", "status", "pickup_deadline"),
    Index("ix_reservations_created", "created_at", "id"),
)

reservation_history = Table(
    "reservation_history",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("reservation_id", String(36), ForeignKey("reservations.id"), nullable=False, index=True),
    Column("from_status", String(30), nullable=True),
    Column("to_status", String(30), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(120), nullable=False),
)

outbox, idempotency_keys = add_runtime_tables(metadata)
