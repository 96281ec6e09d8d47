"""inventory_svc's own database."""

from sqlalchemy import CheckConstraint, Column, Integer, MetaData, PrimaryKeyConstraint, String, Table
from sqlalchemy.dialects.postgresql import UUID

from messaging.tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

stock = Table(
    "stock",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("available", Integer, nullable=False),
    Column("reserved", Integer, nullable=False, server_default="0"),
    CheckConstraint("available >= 0 AND reserved >= 0", name="stock_not_negative"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("saga_id", UUID(as_uuid=True), nullable=False),
    Column("order_id", UUID(as_uuid=True), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    PrimaryKeyConstraint("saga_id", "sku"),
)
