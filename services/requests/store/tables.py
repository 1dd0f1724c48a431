"""The requests service's tables.

- ``inbox_requests``: one row per web request, the domain's ``ReservationRequest``. A partial unique
  index allows one *active* request per (patron, item), so two concurrent submissions cannot both
  pass the "already asked for it" rule.
- ``inbox_events``: the history of every request (one row per transition, with its reason) and the
  feed of the live inbox (``WatchInbox`` reads it by increasing id, so a watcher can resume).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
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

_ACTIVE = text("status IN ('PENDING', 'ADVANCING')")

inbox_requests = Table(
    "inbox_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("patron_id", String(64), nullable=False),
    Column("patron_display_name", String(250), nullable=False, default=""),
    Column("patron_card_barcode", String(64), nullable=False, default=""),
    Column("item_barcode", String(64), nullable=False),
    Column("item_title", String(500), nullable=False, default=""),
    Column("item_author", String(300), nullable=False, default=""),
    Column("pickup_branch", String(64), nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("status", String(20), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("advance_mode", String(30), nullable=True),
    # The request_id of the advance in flight / done, so the same caller's retry completes it.
    Column("advance_key", String(300), nullable=True),
    Column("advanced_by", String(120), nullable=False, default=""),
    Column("advance_started_at", UtcDateTime, nullable=True),
    Column("advanced_at", UtcDateTime, nullable=True),
    Column("reservation_id", String(64), nullable=False, default=""),
    Column("cut_reason", String(40), nullable=True),
    Column("cut_explanation", Text, nullable=False, default=""),
    Column("cut_by", String(120), nullable=False, default=""),
    Column("cut_at", UtcDateTime, nullable=True),
    Column("withdrawn_at", UtcDateTime, nullable=True),
    Column("notice_sent_at", UtcDateTime, nullable=True),
    Column("notice_sent_by", String(120), nullable=False, default=""),
    Column("last_refusal", String(120), nullable=False, default=""),
    Column("notice_failure", String(120), nullable=False, default="", server_default=""),
    CheckConstraint("status IN ('PENDING', 'ADVANCING', 'ADVANCED', 'CUT', 'WITHDRAWN')", name="status"),
    CheckConstraint("status <> 'ADVANCED' OR reservation_id <> ''", name="advanced_has_reservation"),
    Index("ix_inbox_requests_created", "created_at", "id"),
    Index("ix_inbox_requests_status_created", "status", "created_at"),
    Index("ix_inbox_requests_branch_created", "pickup_branch", "created_at"),
    Index("ix_inbox_requests_patron_created", "patron_id", "created_at"),
    Index("ix_inbox_requests_advancing", "status", "advance_started_at"),
    Index(
        "uq_inbox_requests_active_patron_item",
        "patron_id",
        "item_barcode",
        unique=True,
        sqlite_where=_ACTIVE,
        postgresql_where=_ACTIVE,
    ),
)

inbox_events = Table(
    "inbox_events",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("request_id", String(36), ForeignKey("inbox_requests.id"), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("from_status", String(20), nullable=True),
    Column("to_status", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(120), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_inbox_events_request", "request_id", "id"),
)

outbox, idempotency = add_runtime_tables(metadata)
