"""fulfillment_svc's own database."""

from sqlalchemy import Column, Date, DateTime, MetaData, String, Table
from sqlalchemy.dialects.postgresql import JSONB, UUID

from messaging.tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

shipments = Table(
    "shipments",
    metadata,
    Column("shipment_id", UUID(as_uuid=True), primary_key=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("order_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("items", JSONB, nullable=False),
    Column("country", String(2), nullable=False),
    Column("delivery_date", Date, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
