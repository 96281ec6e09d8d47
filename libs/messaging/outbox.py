"""Writing to the outbox: the only way a service sends a message."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from .envelope import Envelope

NOTIFY_CHANNEL = "outbox"

_INSERT = text(
    "INSERT INTO outbox (message_id, destination, message_type, saga_id, body, attributes) "
    "VALUES (:message_id, :destination, :message_type, :saga_id, :body, CAST(:attributes AS jsonb))"
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


async def notify_relay(session: AsyncSession) -> None:
    """Wake relays listening on this database; PostgreSQL delivers it only on commit."""
    await session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
