"""pausing sagas: a saga's pause, and the definitions whose new sagas are held at their start

Revision ID: d5a7c9e1f3b4
Revises: c4f6e8b0d2a3
"""

import sqlalchemy as sa
from alembic import op

revision = "d5a7c9e1f3b4"
down_revision = "c4f6e8b0d2a3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sagas", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("sagas", sa.Column("pause_kind", sa.String(20), nullable=True))
    op.add_column("sagas", sa.Column("paused_seconds", sa.Float(), nullable=False, server_default="0"))
    op.create_table(
        "paused_definitions",
        sa.Column("definition", sa.String(50), primary_key=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_table("paused_definitions")
    op.drop_column("sagas", "paused_seconds")
    op.drop_column("sagas", "pause_kind")
    op.drop_column("sagas", "paused_at")
