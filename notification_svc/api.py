"""notification_svc's API: what was sent to an order's customer, for operators."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select

from messaging.http import operator_router
from messaging.service import SessionDep

from .tables import notifications

router = operator_router(tags=["notifications"])


class NotificationView(BaseModel):
    notification_id: uuid.UUID
    saga_id: uuid.UUID
    """The saga that sent it: an order's confirmation and its cancellation notices differ by it."""
    order_id: uuid.UUID
    channel: Literal["email", "push"]
    status: str
    subject: str | None
    provider_message_id: str | None
    created_at: datetime
    sent_at: datetime | None


@router.get("/notifications", response_model=list[NotificationView])
async def list_notifications(order_id: uuid.UUID, session: SessionDep) -> list[NotificationView]:
    """An order's email and push notifications and their delivery state (never the address or text)."""
    rows = await session.execute(
        select(notifications).where(notifications.c.order_id == order_id).order_by(notifications.c.channel)
    )
    return [NotificationView.model_validate(r, from_attributes=True) for r in rows]
