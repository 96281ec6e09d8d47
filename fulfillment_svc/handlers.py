"""fulfillment_svc's message handlers: the order saga's fulfill_order and its compensation; the
cancellation saga's cancel_scheduled_shipment and its compensation; SettleStep for both."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update

from contracts import messages as c
from contracts import steps
from contracts.topology import FULFILLMENT_COMMANDS
from messaging import erasure, participant
from messaging.bus import Handlers
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork

from . import domain
from .tables import shipments

PERSONAL_DATA: tuple[erasure.PersonalData, ...] = ()
"""A shipment keeps its country and items; the address was forgotten when the parcel was booked."""


def handlers(delivery_days: int) -> Handlers:
    async def fulfill_order(uow: UnitOfWork, envelope: Envelope, command: c.FulfillOrder) -> None:
        async def apply():
            now = datetime.now(UTC)
            delivery = domain.schedule(command.shipping_address.country, now.date(), delivery_days)
            shipment_id = uuid.uuid4()
            await uow.session.execute(
                shipments.insert().values(
                    shipment_id=shipment_id,
                    saga_id=envelope.saga_id,
                    order_id=command.order_id,
                    status=domain.SCHEDULED,
                    items=[i.model_dump(mode="json") for i in command.items],
                    country=command.shipping_address.country,
                    delivery_date=delivery,
                    created_at=now,
                    updated_at=now,
                )
            )
            return c.OrderFulfilled(order_id=command.order_id, shipment_id=shipment_id)

        await participant.forward(
            uow,
            envelope,
            step=steps.FULFILL_ORDER,
            apply=apply,
            refusals=(domain.ShipmentRefused,),
            refuse=lambda reason: c.FulfillmentFailed(order_id=command.order_id, reason=reason),
        )

    async def cancel_shipment(uow: UnitOfWork, envelope: Envelope, command: c.CancelShipment) -> None:
        async def undo():
            which = (
                shipments.c.shipment_id == command.shipment_id if command.shipment_id else shipments.c.saga_id == envelope.saga_id
            )
            shipment = (await uow.session.execute(select(shipments).where(which).with_for_update())).one()
            await uow.session.execute(
                update(shipments)
                .where(shipments.c.shipment_id == shipment.shipment_id)
                .values(status=domain.cancel(shipment.status), updated_at=datetime.now(UTC))
            )
            return c.ShipmentCancelled(order_id=command.order_id)

        await participant.compensate(
            uow,
            envelope,
            step=steps.FULFILL_ORDER,
            undo=undo,
            refusals=(domain.ShipmentNotCancellable,),
            done=lambda: c.ShipmentCancelled(order_id=command.order_id),
            refuse=lambda reason: c.ShipmentCancellationFailed(order_id=command.order_id, reason=reason),
        )

    async def cancel_scheduled_shipment(uow: UnitOfWork, envelope: Envelope, command: c.CancelScheduledShipment) -> None:
        async def apply():
            shipment = await _order_shipment(uow, command.order_id)
            if shipment is None:
                raise domain.ShipmentNotCancellable("the order has no shipment")
            await _set(uow, shipment.shipment_id, domain.cancel(shipment.status))
            return c.ScheduledShipmentCancelled(order_id=command.order_id)

        await participant.forward(
            uow,
            envelope,
            step=steps.CANCEL_SCHEDULED_SHIPMENT,
            apply=apply,
            refusals=(domain.ShipmentNotCancellable,),
            refuse=lambda reason: c.ShipmentAlreadyDispatched(order_id=command.order_id, reason=reason),
        )

    async def reinstate_shipment(uow: UnitOfWork, envelope: Envelope, command: c.ReinstateShipment) -> None:
        async def undo():
            shipment = await _order_shipment(uow, command.order_id)
            if shipment is not None:
                await _set(uow, shipment.shipment_id, domain.reinstate(shipment.status))
            return c.ShipmentReinstated(order_id=command.order_id)

        await participant.compensate(
            uow,
            envelope,
            step=steps.CANCEL_SCHEDULED_SHIPMENT,
            undo=undo,
            done=lambda: c.ShipmentReinstated(order_id=command.order_id),
        )

    return participant.handlers(
        steps.owned_by(FULFILLMENT_COMMANDS),
        {
            c.FulfillOrder: fulfill_order,
            c.CancelShipment: cancel_shipment,
            c.CancelScheduledShipment: cancel_scheduled_shipment,
            c.ReinstateShipment: reinstate_shipment,
        },
        settle_with=(c.SettleStep, c.step_settled),
        erase_with=(c.EraseCustomerData, c.customer_data_erased),
        personal_data=PERSONAL_DATA,
    )


async def _order_shipment(uow: UnitOfWork, order_id: uuid.UUID):
    """The order's shipment, locked (an order has at most one: its saga's)."""
    query = select(shipments).where(shipments.c.order_id == order_id).order_by(shipments.c.created_at.desc()).limit(1)
    return (await uow.session.execute(query.with_for_update())).first()


async def _set(uow: UnitOfWork, shipment_id: uuid.UUID, status: str) -> None:
    await uow.session.execute(
        update(shipments).where(shipments.c.shipment_id == shipment_id).values(status=status, updated_at=datetime.now(UTC))
    )
