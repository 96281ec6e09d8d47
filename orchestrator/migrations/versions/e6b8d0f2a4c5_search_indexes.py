"""search indexes: sagas by failed step, by version and by customer, newest first

Revision ID: e6b8d0f2a4c5
Revises: d5a7c9e1f3b4
"""

import sqlalchemy as sa
from alembic import op

revision = "e6b8d0f2a4c5"
down_revision = "d5a7c9e1f3b4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "sagas_by_failed_step_newest",
        "sagas",
        ["failed_step", "created_at"],
        postgresql_where=sa.text("failed_step IS NOT NULL"),
    )
    op.create_index("sagas_by_version", "sagas", ["definition", "definition_version", "created_at"])
    op.create_index("sagas_by_customer_newest", "sagas", [sa.text("(data ->> 'customer_id')"), "created_at"])


def downgrade() -> None:
    op.drop_index("sagas_by_customer_newest", table_name="sagas")
    op.drop_index("sagas_by_version", table_name="sagas")
    op.drop_index("sagas_by_failed_step_newest", table_name="sagas")
