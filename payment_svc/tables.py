"""payment_svc's own database: one row per charge or refund."""

from sqlalchemy import Column, DateTime, MetaData, Numeric, String, Table
from sqlalchemy.dialects.postgresql import UUID

from messaging.tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

payments = Table(
    "payments",
    metadata,
    Column("payment_id", UUID(as_uuid=True), primary_key=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("order_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("kind", String(10), nullable=False),  # charge | refund
    Column("status", String(20), nullable=False),  # succeeded | declined | failed
    Column("amount", Numeric(14, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("token_fingerprint", String(64)),  # sha256 of the payment token; the token is never stored
    Column("created_at", DateTime(timezone=True), nullable=False),
)
