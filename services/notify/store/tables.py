"""The notify service's tables (its own database; no other service reads them)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
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
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

outbox, idempotency_keys = add_runtime_tables(metadata)

templates = Table(
    "templates",
    metadata,
    Column("event_key", String(64), primary_key=True),
    Column("language", String(8), primary_key=True),
    Column("subject", Text, nullable=False),
    Column("body_text", Text, nullable=False),
    Column("body_html", Text, nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("built_in", Boolean, nullable=False, default=False),
    Column("version", Integer, nullable=False, default=1),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False, default=""),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(36), primary_key=True),
    # The idempotency key: at most one message (and so one e-mail) per key.
    Column("request_id", String(300), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("patron_id", String(64), nullable=False),
    Column("template_key", String(64), nullable=False, default=""),
    Column("language", String(8), nullable=False),
    Column("reference", String(300), nullable=False, default=""),
    Column("recipient", String(320), nullable=False),
    Column("recipient_name", String(300), nullable=False, default=""),
    # The redacted copy kept in the history.
    Column("subject", Text, nullable=False),
    Column("body_text", Text, nullable=False),
    Column("body_html", Text, nullable=False, default=""),
    Column("message_id_header", String(300), nullable=False),
    Column("auto_generated", Boolean, nullable=False, default=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=False, default=""),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("requested_by", String(200), nullable=False, default=""),
    # Only for messages with secret variables: the content as it must be delivered, encrypted
    # (AES-GCM, key from settings); set to NULL once the message is SENT, FAILED or CANCELLED.
    Column("has_secrets", Boolean, nullable=False, default=False),
    Column("sealed_content", LargeBinary, nullable=True),
    UniqueConstraint("request_id"),
    Index("ix_messages_due", "status", "next_attempt_at"),
    Index("ix_messages_patron", "patron_id", "created_at"),
    Index("ix_messages_reference", "reference"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("message_id", String(36), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=False),
    # DELIVERED | TEMPORARY_FAILURE | PERMANENT_FAILURE
    Column("outcome", String(32), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    # The transition it caused, with its reason ("temporary failure, will retry", ...).
    Column("status_before", String(16), nullable=False),
    Column("status_after", String(16), nullable=False),
    Column("reason", String(100), nullable=False),
    Index("ix_delivery_attempts_message", "message_id", "number"),
)

# Staff actions on a message (retry, cancel) with their reason: the rest of the audit trail.
message_events = Table(
    "message_events",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("message_id", String(36), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("status_before", String(16), nullable=False),
    Column("status_after", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(200), nullable=False, default=""),
    Index("ix_message_events_message", "message_id"),
)
