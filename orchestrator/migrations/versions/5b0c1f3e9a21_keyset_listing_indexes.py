"""keyset listing indexes

Revision ID: 5b0c1f3e9a21
Revises: 0775aa218009
"""

from alembic import op

revision = "5b0c1f3e9a21"
down_revision = "0775aa218009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("sagas_newest", "sagas", ["created_at", "saga_id"], unique=False)
    op.create_index("sagas_by_status_newest", "sagas", ["status", "created_at", "saga_id"], unique=False)
    # The status index leads the new one, which serves every query the old one did.
    op.drop_index("ix_sagas_status", table_name="sagas")


def downgrade() -> None:
    op.create_index("ix_sagas_status", "sagas", ["status"], unique=False)
    op.drop_index("sagas_by_status_newest", table_name="sagas")
    op.drop_index("sagas_newest", table_name="sagas")
