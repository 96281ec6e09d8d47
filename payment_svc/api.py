"""payment_svc's API: an order's charges and refunds, for operators."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select

from messaging.http import operator_router
from messaging.service import SessionDep

from .tables import payments

router = operator_router(tags=["payments"])


class PaymentView(BaseModel):
    payment_id: uuid.UUID
    order_id: uuid.UUID
    kind: Literal["charge", "refund"]
    status: str
    amount: Decimal
    currency: str
    created_at: datetime


class PaymentsView(BaseModel):
    order_id: uuid.UUID
    charged: Decimal
    refunded: Decimal
    payments: list[PaymentView]


@router.get("/payments", response_model=PaymentsView)
async def list_payments(order_id: uuid.UUID, session: SessionDep) -> PaymentsView:
    """An order's charges and refunds, and the totals that succeeded."""
    rows = (await session.execute(select(payments).where(payments.c.order_id == order_id).order_by(payments.c.created_at))).all()
    views = [PaymentView.model_validate(r, from_attributes=True) for r in rows]

    def total(kind: str) -> Decimal:
        return sum((v.amount for v in views if v.kind == kind and v.status == "succeeded"), Decimal("0.00"))

    return PaymentsView(order_id=order_id, charged=total("charge"), refunded=total("refund"), payments=views)
