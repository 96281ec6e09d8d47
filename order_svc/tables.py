"""order_svc's own database."""
from sqlalchemy import Column, DateTime, MetaData, Numeric, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from messaging.tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

orders = Table(
    "orders", metadata,
    Column("order_id", UUID(as_uuid=True), primary_key=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("customer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("items", JSONB, nullable=False),
    Column("total", Numeric(14, 2), nullable=False),
    Column("status", String(20), nullable=False),
    Column("cancel_reason", Text),
    # When order_svc last asked the orchestrator to settle this order's saga in case it
    # never started (see ``stranded``); null until the order outlived the bound.
    Column("start_checked_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("order_id", UUID(as_uuid=True), nullable=False),
    Column("response", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
