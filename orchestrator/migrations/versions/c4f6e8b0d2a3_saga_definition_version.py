"""saga definition version: the version of its definition each saga started on

Revision ID: c4f6e8b0d2a3
Revises: b3e5d7a9c1f2
"""

import sqlalchemy as sa
from alembic import op

revision = "c4f6e8b0d2a3"
down_revision = "b3e5d7a9c1f2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every saga before versions existed ran on what is now version 1 of its definition.
    op.add_column("sagas", sa.Column("definition_version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    op.drop_column("sagas", "definition_version")
