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
    # The order's system of record keeps whom to tell and where to ship; no other service does.
    Column("customer_email", String(254)),
    Column("shipping_address", JSONB),
    Column("currency", String(3), nullable=False),
    Column("items", JSONB, nullable=False),
    Column("total", Numeric(14, 2), nullable=False),
    Column("status", String(20), nullable=False),
    Column("cancel_reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Keys are scoped to the customer and expire after 24 hours (the janitor deletes them).
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("order_id", UUID(as_uuid=True), nullable=False),
    Column("response", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)
