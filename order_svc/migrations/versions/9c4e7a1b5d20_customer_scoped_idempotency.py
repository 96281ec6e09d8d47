"""orders keep their email and address; idempotency keys scoped to the customer and expiring

Revision ID: 9c4e7a1b5d20
Revises: 854c9b6b916e
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "9c4e7a1b5d20"
down_revision = "854c9b6b916e"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("customer_email", sa.String(length=254), nullable=True))
    op.add_column("orders", sa.Column("shipping_address", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("idempotency_keys", sa.Column("customer_id", sa.String(length=64), nullable=True))
    op.execute("UPDATE idempotency_keys k SET customer_id = o.customer_id FROM orders o WHERE o.order_id = k.order_id")
    op.execute("DELETE FROM idempotency_keys WHERE customer_id IS NULL")
    op.alter_column("idempotency_keys", "customer_id", nullable=False)
    op.drop_constraint("idempotency_keys_pkey", "idempotency_keys", type_="primary")
    op.create_primary_key("idempotency_keys_pkey", "idempotency_keys", ["customer_id", "key"])
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_constraint("idempotency_keys_pkey", "idempotency_keys", type_="primary")
    op.execute("DELETE FROM idempotency_keys a USING idempotency_keys b WHERE a.key = b.key AND a.ctid < b.ctid")
    op.create_primary_key("idempotency_keys_pkey", "idempotency_keys", ["key"])
    op.drop_column("idempotency_keys", "customer_id")
    op.drop_column("orders", "shipping_address")
    op.drop_column("orders", "customer_email")
