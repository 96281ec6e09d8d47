"""saga trace context: the W3C trace context a saga's later spans (deadlines, operator actions) join

Revision ID: b3e5d7a9c1f2
Revises: 8d41c7e2b6f0
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "b3e5d7a9c1f2"
down_revision = "8d41c7e2b6f0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sagas", sa.Column("trace_context", postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("sagas", "trace_context")
