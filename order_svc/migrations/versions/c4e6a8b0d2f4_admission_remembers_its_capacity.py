"""admission remembers the best finishing rate it has seen

Revision ID: c4e6a8b0d2f4
Revises: b3d5f7a9c1e2
"""

import sqlalchemy as sa
from alembic import op

revision = "c4e6a8b0d2f4"
down_revision = "b3d5f7a9c1e2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admission_capacity",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("orders_per_second", sa.Float(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="admission_capacity_one_row"),
    )


def downgrade() -> None:
    op.drop_table("admission_capacity")
