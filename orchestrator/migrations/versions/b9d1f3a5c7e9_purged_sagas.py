"""purged_sagas: what is left of a finished saga once its retention ran out

Revision ID: b9d1f3a5c7e9
Revises: a8c0e2f4b6d8
"""

import sqlalchemy as sa
from alembic import op

revision = "b9d1f3a5c7e9"
down_revision = "a8c0e2f4b6d8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "purged_sagas",
        sa.Column("saga_id", sa.UUID(), primary_key=True),
        sa.Column("definition", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("archive", sa.Text()),
    )
    op.create_index("purged_sagas_purged_at", "purged_sagas", ["purged_at"])


def downgrade() -> None:
    op.drop_table("purged_sagas")
