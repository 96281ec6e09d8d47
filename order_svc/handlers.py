"""order_svc's message handlers: the order saga's compensation of create_order and its end, the
cancellation saga's cancel_confirmed_order, SettleStep for both, and the status of every saga
about an order."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from sqlalchemy import select, update

from contracts import messages as c
from contracts import steps
from contracts.topology import ORDER_COMMANDS, ORDER_EVENTS
from messaging import erasure, participant
from messaging.bus import Handlers
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork

from . import domain
from .tables import order_sagas, orders

log = structlog.get_logger("order_svc")


async def _locked_status(uow: UnitOfWork, order_id) -> str | None:
    query = select(orders.c.status).where(orders.c.order_id == order_id).with_for_update()
    return (await uow.session.execute(query)).scalar_one_or_none()


async def _set_status(uow: UnitOfWork, order_id, **values):
    statement = update(orders).where(orders.c.order_id == order_id).values(updated_at=datetime.now(UTC), **values)
    return (await uow.session.execute(statement.returning(orders.c.total, orders.c.currency))).one()


async def cancel_order(uow: UnitOfWork, envelope: Envelope, command: c.CancelOrder) -> None:
    """Compensation of create_order; repeatable, so a retried CancelOrder is acknowledged again.

    It keeps no step guard: cancelling a cancelled order changes nothing. So a settlement by
    hand (SettleStep, recorded in the guard) does not stop it either: the saga it belongs to is
    compensated, its order must end cancelled, and no person can cancel an order but this."""
    status = await _locked_status(uow, command.order_id)
    if status is None:
        # The order is created in the transaction that starts the saga, so this happens
        # only with a hand-made message; acknowledging keeps the saga from hanging.
        log.warning("cancel_for_unknown_order")
    elif status != domain.CANCELLED:
        await _set_status(uow, command.order_id, status=domain.cancel(status), cancel_reason=command.reason)
        await uow.send(
            c.OrderCancelledEvent(order_id=command.order_id, reason=command.reason), f"topic:{ORDER_EVENTS}", causation=envelope
        )
    await uow.reply(envelope, c.OrderCancelled(order_id=command.order_id))


async def confirm_order(uow: UnitOfWork, envelope: Envelope, command: c.ConfirmOrder) -> None:
    """Sent once the saga completed; no reply is expected."""
    status = await _locked_status(uow, command.order_id)
    if status != domain.PENDING:
        log.warning("confirm_ignored", status=status)
        return
    row = await _set_status(uow, command.order_id, status=domain.confirm(status))
    await uow.send(
        c.OrderConfirmedEvent(order_id=command.order_id, total=row.total, currency=row.currency),
        f"topic:{ORDER_EVENTS}",
        causation=envelope,
    )


async def cancel_confirmed_order(uow: UnitOfWork, envelope: Envelope, command: c.CancelConfirmedOrder) -> None:
    """The cancellation saga's last business step."""

    async def apply():
        status = await _locked_status(uow, command.order_id)
        if status is None:
            raise domain.OrderError("no such order")
        await _set_status(uow, command.order_id, status=domain.cancel_by_customer(status), cancel_reason=command.reason)
        await uow.send(
            c.OrderCancelledEvent(order_id=command.order_id, reason=command.reason), f"topic:{ORDER_EVENTS}", causation=envelope
        )
        return c.ConfirmedOrderCancelled(order_id=command.order_id)

    await participant.forward(
        uow,
        envelope,
        step=steps.CANCEL_CONFIRMED_ORDER,
        apply=apply,
        refusals=(domain.OrderError,),
        refuse=lambda reason: c.CancelConfirmedOrderRefused(order_id=command.order_id, reason=reason),
    )


async def saga_status_changed(uow: UnitOfWork, envelope: Envelope, event: c.SagaStatusChanged) -> None:
    """Keep the status of an order's sagas; an older change that arrives late is dropped."""
    await uow.session.execute(
        update(order_sagas)
        .where(
            order_sagas.c.saga_id == event.saga_id,
            order_sagas.c.changed_at <= event.at,
        )
        .values(status=event.status, changed_at=event.at)
    )


PERSONAL_DATA = (erasure.PersonalData(orders, ("customer_email", "shipping_address"), by="customer_id"),)
"""The order is the system of record of whom to tell and where to ship."""


HANDLERS: Handlers = participant.handlers(
    steps.owned_by(ORDER_COMMANDS),
    {
        c.CancelOrder: cancel_order,
        c.ConfirmOrder: confirm_order,
        c.CancelConfirmedOrder: cancel_confirmed_order,
        c.SagaStatusChanged: saga_status_changed,
    },
    settle_with=(c.SettleStep, c.step_settled),
    erase_with=(c.EraseCustomerData, c.customer_data_erased),
    personal_data=PERSONAL_DATA,
)
