"""The messaging tables every service adds to its own database.

They are built by the library's own migrations (:mod:`messaging.migrations`), not the services'.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID


def add_messaging_tables(metadata: MetaData) -> None:
    """Declare ``outbox``, ``inbox``, ``saga_step_guard`` and ``audit_log`` in a service's metadata."""
    Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("message_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("destination", String(200), nullable=False),
        Column("message_type", String(100), nullable=False),
        Column("saga_id", UUID(as_uuid=True)),
        Column("body", Text, nullable=False),
        Column("attributes", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text),
        # The relay only ever scans unpublished rows; a partial index keeps that cheap.
        Index("outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    )
    Table(
        "inbox",
        metadata,
        Column("consumer", String(100), nullable=False),
        Column("message_id", UUID(as_uuid=True), nullable=False),
        Column("message_type", String(100), nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "message_id"),
    )
    Table(
        "saga_step_guard",
        metadata,
        Column("saga_id", UUID(as_uuid=True), nullable=False),
        Column("step", String(100), nullable=False),
        Column("state", String(20), nullable=False),
        Column("result", JSONB),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("saga_id", "step"),
    )
    Table(
        "audit_log",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("actor", String(100), nullable=False),
        Column("role", String(20)),
        Column("action", String(100), nullable=False),
        Column("target", String(300), nullable=False),
        Column("outcome", String(20), nullable=False),
        Column("status", Integer, nullable=False),
        Column("source", String(100)),
        Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Index("audit_log_by_actor", "actor", "id"),
    )


metadata = MetaData()
"""The messaging tables alone: what the library's migrations build."""
add_messaging_tables(metadata)
