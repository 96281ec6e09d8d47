"""deadline checks: when a saga's next deadline check may be staged

Revision ID: 8d41c7e2b6f0
Revises: 62ca9b92fa2a
"""

import sqlalchemy as sa
from alembic import op

revision = "8d41c7e2b6f0"
down_revision = "62ca9b92fa2a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sagas", sa.Column("deadline_check_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("sagas", "deadline_check_at")
