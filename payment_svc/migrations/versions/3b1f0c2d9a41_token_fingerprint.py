"""keep a fingerprint of the payment token, never the token

Revision ID: 3b1f0c2d9a41
Revises: eedce0360a0c
"""

import sqlalchemy as sa
from alembic import op

revision = "3b1f0c2d9a41"
down_revision = "eedce0360a0c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("token_fingerprint", sa.String(length=64), nullable=True))
    # The same one-way hash as payment_svc.domain.fingerprint, for charges made before.
    op.execute(
        "UPDATE payments SET token_fingerprint = encode(sha256(convert_to(detail, 'UTF8')), 'hex') WHERE detail IS NOT NULL"
    )
    op.drop_column("payments", "detail")


def downgrade() -> None:
    op.add_column("payments", sa.Column("detail", sa.Text(), nullable=True))
    op.drop_column("payments", "token_fingerprint")
