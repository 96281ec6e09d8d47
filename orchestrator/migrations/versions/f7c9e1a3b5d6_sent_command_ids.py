"""sent command ids: each step's sends, which a reply must name as its causation

Revision ID: f7c9e1a3b5d6
Revises: e6b8d0f2a4c5

A column of its own rather than keys of ``steps``: the previous release builds each step from
``steps`` with every key it finds, so new keys there would stop it reading a saga the new
release touched while both run during the upgrade.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "f7c9e1a3b5d6"
down_revision = "e6b8d0f2a4c5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sagas", sa.Column("sent", postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("sagas", "sent")
