"""payment_svc's message handlers: the order saga's screen_order (its version 2) and process_payment and its compensation; the
cancellation saga's refund_charge; SettleStep for both."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select

from contracts import messages as c
from contracts import steps
from contracts.topology import PAYMENT_COMMANDS
from messaging import erasure, participant
from messaging.bus import Handlers
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork

from . import domain
from .tables import payments


async def screen_order(uow: UnitOfWork, envelope: Envelope, command: c.ScreenOrder) -> None:
    async def apply():
        domain.screen(command.total)
        return c.OrderScreened(order_id=command.order_id)

    await participant.forward(
        uow,
        envelope,
        step=steps.SCREEN_ORDER,
        apply=apply,
        refusals=(domain.ScreeningRefused,),
        refuse=lambda reason: c.OrderScreeningFailed(order_id=command.order_id, reason=reason),
    )


async def process_payment(uow: UnitOfWork, envelope: Envelope, command: c.ProcessPayment) -> None:
    async def apply():
        domain.charge(command.payment_token)
        payment_id = uuid.uuid4()
        await uow.session.execute(
            payments.insert().values(
                payment_id=payment_id,
                saga_id=envelope.saga_id,
                order_id=command.order_id,
                kind="charge",
                status="succeeded",
                amount=command.amount,
                currency=command.currency,
                # Only a fingerprint of the token is kept, to route a refund to the same
                # instrument; the token itself is never stored.
                token_fingerprint=domain.fingerprint(command.payment_token),
                created_at=datetime.now(UTC),
            )
        )
        return c.PaymentProcessed(order_id=command.order_id, payment_id=payment_id)

    await participant.forward(
        uow,
        envelope,
        step=steps.PROCESS_PAYMENT,
        apply=apply,
        refusals=(domain.PaymentDeclined,),
        refuse=lambda reason: c.PaymentFailed(order_id=command.order_id, reason=reason),
    )


async def _refund(uow: UnitOfWork, envelope: Envelope, charge) -> None:
    """Refund ``charge`` in full; the refund row belongs to the saga that asked for it."""
    domain.refund(charge.token_fingerprint)
    await uow.session.execute(
        payments.insert().values(
            payment_id=uuid.uuid4(),
            saga_id=envelope.saga_id,
            order_id=charge.order_id,
            kind="refund",
            status="succeeded",
            amount=charge.amount,
            currency=charge.currency,
            created_at=datetime.now(UTC),
        )
    )


async def refund_payment(uow: UnitOfWork, envelope: Envelope, command: c.RefundPayment) -> None:
    async def undo():
        which = payments.c.payment_id == command.payment_id if command.payment_id else payments.c.saga_id == envelope.saga_id
        charge = (await uow.session.execute(select(payments).where(which, payments.c.kind == "charge"))).one()
        await _refund(uow, envelope, charge)
        return c.PaymentRefunded(order_id=command.order_id, amount=charge.amount)

    await participant.compensate(
        uow,
        envelope,
        step=steps.PROCESS_PAYMENT,
        undo=undo,
        refusals=(domain.RefundRejected,),
        done=lambda: c.PaymentRefunded(order_id=command.order_id, amount=Decimal("0.00")),
        refuse=lambda reason: c.PaymentRefundFailed(order_id=command.order_id, reason=reason),
    )


async def refund_charge(uow: UnitOfWork, envelope: Envelope, command: c.RefundCharge) -> None:
    async def apply():
        charge = (
            await uow.session.execute(
                select(payments).where(payments.c.order_id == command.order_id, payments.c.kind == "charge")
            )
        ).one()
        await _refund(uow, envelope, charge)
        return c.ChargeRefunded(order_id=command.order_id, amount=charge.amount)

    await participant.forward(
        uow,
        envelope,
        step=steps.REFUND_CHARGE,
        apply=apply,
        refusals=(domain.RefundRejected,),
        refuse=lambda reason: c.ChargeRefundFailed(order_id=command.order_id, reason=reason),
    )


PERSONAL_DATA = (erasure.PersonalData(payments, ("token_fingerprint",), by="order_id"),)
"""The card token's fingerprint tells one card from another: a charge keeps its amount, not that."""


HANDLERS: Handlers = participant.handlers(
    steps.owned_by(PAYMENT_COMMANDS),
    {
        c.ScreenOrder: screen_order,
        c.ProcessPayment: process_payment,
        c.RefundPayment: refund_payment,
        c.RefundCharge: refund_charge,
    },
    settle_with=(c.SettleStep, c.step_settled),
    erase_with=(c.EraseCustomerData, c.customer_data_erased),
    personal_data=PERSONAL_DATA,
)
