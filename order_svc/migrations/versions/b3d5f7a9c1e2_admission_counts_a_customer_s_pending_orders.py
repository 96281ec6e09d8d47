"""admission counts a customer's pending orders by index

Revision ID: b3d5f7a9c1e2
Revises: 0c8614e73abd
"""

import sqlalchemy as sa
from alembic import op

revision = "b3d5f7a9c1e2"
down_revision = "0c8614e73abd"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Partial: only the pending orders, the few in flight, so it is small and quick to build.
    op.create_index(
        "orders_pending_by_customer",
        "orders",
        ["customer_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("orders_pending_by_customer", table_name="orders", postgresql_where=sa.text("status = 'pending'"))
