"""Writing to the outbox: the only way a service sends a message."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from .envelope import Envelope

NOTIFY_CHANNEL = "outbox"

# The row and its NOTIFY in one round trip. PostgreSQL delivers a NOTIFY only on commit, and
# once per distinct payload per transaction; the payload names the destination, so the relay
# knows what to publish without asking.
_INSERT = text(
    "WITH staged AS (INSERT INTO outbox (message_id, destination, message_type, saga_id, body, attributes) "
    "VALUES (:message_id, :destination, :message_type, :saga_id, :body, CAST(:attributes AS jsonb)) "
    f"RETURNING destination) SELECT pg_notify('{NOTIFY_CHANNEL}', destination) FROM staged"
)


async def add(session: AsyncSession, envelope: Envelope, destination: str) -> None:
    """Stage ``envelope`` for ``destination`` inside the session's open transaction.

    ``destination`` is ``queue:<logical name>`` or ``topic:<logical name>``. The row becomes
    visible to the relay only when the caller's transaction commits, together with the state
    change that caused it; a rollback discards both.
    """
    kind, _, name = destination.partition(":")
    if kind not in ("queue", "topic") or not name:
        raise ValueError(f"destination must be queue:<name> or topic:<name>, not {destination!r}")

    await session.execute(
        _INSERT,
        {
            "message_id": envelope.message_id,
            "destination": destination,
            "message_type": envelope.message_type,
            "saga_id": envelope.saga_id,
            "body": envelope.model_dump_json(),
            "attributes": json.dumps(envelope.routing_attributes()),
        },
    )
