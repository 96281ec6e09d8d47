"""saga subject instead of order id

Revision ID: 62ca9b92fa2a
Revises: 5b0c1f3e9a21
"""

import sqlalchemy as sa
from alembic import op

revision = "62ca9b92fa2a"
down_revision = "5b0c1f3e9a21"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing sagas keep what they are about: the order id becomes the subject.
    op.alter_column(
        "sagas", "order_id", new_column_name="subject", type_=sa.String(length=100), postgresql_using="order_id::text"
    )
    op.execute("ALTER INDEX ix_sagas_order_id RENAME TO ix_sagas_subject")


def downgrade() -> None:
    op.execute("ALTER INDEX ix_sagas_subject RENAME TO ix_sagas_order_id")
    op.alter_column("sagas", "subject", new_column_name="order_id", type_=sa.UUID(), postgresql_using="subject::uuid")
