"""orders that still hold personal data, by when they last changed (the janitor erases it)

Revision ID: d5f7b9c1e3a5
Revises: c4e6a8b0d2f4
"""

import sqlalchemy as sa
from alembic import op

revision = "d5f7b9c1e3a5"
down_revision = "c4e6a8b0d2f4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "orders_with_personal_data",
        "orders",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("customer_email IS NOT NULL OR shipping_address IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("orders_with_personal_data", table_name="orders")
