"""Deduplicating received messages."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_CLAIM = text(
    "INSERT INTO inbox (consumer, message_id, message_type) VALUES (:consumer, :message_id, :message_type) "
    "ON CONFLICT DO NOTHING RETURNING message_id"
)


async def claim(session: AsyncSession, consumer: str, message_id: uuid.UUID, message_type: str) -> bool:
    """Record that ``consumer`` is handling ``message_id``; False if it already did.

    Must run in the same transaction as the handler's effects: if that transaction rolls
    back, so does the claim, and the redelivered message is handled again. A concurrent
    delivery of the same message blocks on the primary key until the first commits and then
    sees the duplicate.
    """
    result = await session.execute(_CLAIM, {"consumer": consumer, "message_id": message_id, "message_type": message_type})
    return result.first() is not None
