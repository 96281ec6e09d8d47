"""sagas reported compensated while a compensation was unacknowledged go back to compensating

Revision ID: d2f4b6c8e0a3
Revises: c0e2a4b6d8f1
"""

from alembic import op

revision = "d2f4b6c8e0a3"
down_revision = "c0e2a4b6d8f1"
branch_labels = None
depends_on = None

# Before this release a saga whose chain of compensations reached the bottom was compensated
# even while a timed-out step's own undo was unacknowledged. Such a saga is compensating: it
# ends compensated once that undo is acknowledged, or needs a person if it never is.
MIGRATE = """
WITH corrected AS (
    UPDATE sagas SET status = 'compensating', updated_at = now()
    WHERE status = 'compensated' AND steps @> '[{"status": "compensating"}]'::jsonb
    RETURNING saga_id
)
INSERT INTO saga_history (saga_id, at, event, step, detail)
SELECT saga_id, now(), 'compensation_started', NULL,
       'status corrected on upgrade: compensated while a compensation was unacknowledged'
FROM corrected
"""


def upgrade() -> None:
    op.execute(MIGRATE)


def downgrade() -> None:
    pass  # the earlier status was the error: nothing to restore
