"""payment_svc's message handlers: process_payment and its compensation."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select

from messaging import contracts as c
from messaging import participant
from messaging.bus import Handlers
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork

from . import domain
from .tables import payments

STEP = "process_payment"


async def process_payment(uow: UnitOfWork, envelope: Envelope, command: c.ProcessPayment) -> None:
    async def apply():
        domain.charge(command.payment_token)
        payment_id = uuid.uuid4()
        await uow.session.execute(payments.insert().values(
            payment_id=payment_id, saga_id=envelope.saga_id, order_id=command.order_id, kind="charge",
            status="succeeded", amount=command.amount, currency=command.currency,
            # The token is kept only to route a refund to the same instrument, as a
            # provider's charge id would be; it never appears in logs or replies.
            detail=command.payment_token, created_at=datetime.now(UTC)))
        return c.PaymentProcessed(order_id=command.order_id, payment_id=payment_id)

    await participant.forward(
        uow, envelope, step=STEP, apply=apply, refusals=(domain.PaymentDeclined,),
        refuse=lambda reason: c.PaymentFailed(order_id=command.order_id, reason=reason),
    )


async def refund_payment(uow: UnitOfWork, envelope: Envelope, command: c.RefundPayment) -> None:
    async def undo():
        charge = (await uow.session.execute(select(payments).where(
            payments.c.saga_id == envelope.saga_id, payments.c.kind == "charge"))).one()
        domain.refund(charge.detail)
        await uow.session.execute(payments.insert().values(
            payment_id=uuid.uuid4(), saga_id=envelope.saga_id, order_id=command.order_id, kind="refund",
            status="succeeded", amount=charge.amount, currency=charge.currency, created_at=datetime.now(UTC)))
        return c.PaymentRefunded(order_id=command.order_id, amount=charge.amount)

    await participant.compensate(
        uow, envelope, step=STEP, undo=undo, refusals=(domain.RefundRejected,),
        done=lambda: c.PaymentRefunded(order_id=command.order_id, amount=Decimal("0.00")),
        refuse=lambda reason: c.PaymentRefundFailed(order_id=command.order_id, reason=reason),
    )


HANDLERS: Handlers = {c.ProcessPayment: process_payment, c.RefundPayment: refund_payment,
                      c.SettleStep: participant.settle(STEP)}
