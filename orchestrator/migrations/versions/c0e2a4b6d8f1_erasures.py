"""erasures: a customer's personal data erased on request, service by service

Revision ID: c0e2a4b6d8f1
Revises: b9d1f3a5c7e9
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "c0e2a4b6d8f1"
down_revision = "b9d1f3a5c7e9"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("erasure_id", sa.UUID(), primary_key=True),
        sa.Column("customer_id", sa.String(length=64), nullable=False, index=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("answers", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("erasures")
