"""order_svc's own database."""

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Index,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from messaging.tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

orders = Table(
    "orders",
    metadata,
    Column("order_id", UUID(as_uuid=True), primary_key=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("customer_id", String(64), nullable=False),
    # The order's system of record keeps whom to tell and where to ship; no other service does
    # (the cancellation notice goes to this address). Null for orders placed before it was kept.
    Column("customer_email", String(254)),
    Column("shipping_address", JSONB),
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
# Admission control counts the pending orders of the last start bound under a lock every
# order waits for (see ``admission``): this keeps that count to the few in flight.
Index("orders_pending", orders.c.created_at, postgresql_where=orders.c.status == "pending")
# ... and those of the order's customer, for the per-customer cap.
Index("orders_pending_by_customer", orders.c.customer_id, orders.c.created_at, postgresql_where=orders.c.status == "pending")
# The orders whose email or address the janitor has yet to erase (see ``erasure``).
Index(
    "orders_with_personal_data",
    orders.c.updated_at,
    postgresql_where=(orders.c.customer_email.isnot(None)) | (orders.c.shipping_address.isnot(None)),
)

# The best rate at which the deployment's orders finished, as one row every replica reads
# and raises: admission's bound starts from what the system has shown it can carry, not
# from what it finished in a quiet moment (see ``admission``).
admission_capacity = Table(
    "admission_capacity",
    metadata,
    Column("id", SmallInteger, primary_key=True),
    Column("orders_per_second", Float, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("id = 1", name="admission_capacity_one_row"),
)

# Keys are scoped to the customer and expire after 24 hours (the janitor deletes them).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("order_id", UUID(as_uuid=True), nullable=False),
    Column("response", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)

# Every saga run about an order, and its status as the orchestrator last reported it
# (SagaStatusChanged, ordered by ``changed_at`` since SQS may deliver them out of order).
# One saga per definition and order: a second cancellation request finds the first.
order_sagas = Table(
    "order_sagas",
    metadata,
    Column("saga_id", UUID(as_uuid=True), primary_key=True),
    Column("order_id", UUID(as_uuid=True), nullable=False),
    Column("definition", String(50), nullable=False),
    Column("status", String(30), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("order_id", "definition", name="order_sagas_one_per_definition"),
)
