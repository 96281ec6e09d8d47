"""fulfillment_svc's message handlers: fulfill_order and its compensation."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update

from messaging import contracts as c
from messaging import participant
from messaging.bus import Handlers
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork

from . import domain
from .tables import shipments

STEP = "fulfill_order"


def handlers(delivery_days: int) -> Handlers:
    async def fulfill_order(uow: UnitOfWork, envelope: Envelope, command: c.FulfillOrder) -> None:
        async def apply():
            now = datetime.now(UTC)
            delivery = domain.schedule(command.shipping_address.country, now.date(), delivery_days)
            shipment_id = uuid.uuid4()
            await uow.session.execute(shipments.insert().values(
                shipment_id=shipment_id, saga_id=envelope.saga_id, order_id=command.order_id,
                status=domain.SCHEDULED, items=[i.model_dump(mode="json") for i in command.items],
                country=command.shipping_address.country, delivery_date=delivery, created_at=now, updated_at=now))
            return c.OrderFulfilled(order_id=command.order_id, shipment_id=shipment_id)

        await participant.forward(
            uow, envelope, step=STEP, apply=apply, refusals=(domain.ShipmentRefused,),
            refuse=lambda reason: c.FulfillmentFailed(order_id=command.order_id, reason=reason),
        )

    async def cancel_shipment(uow: UnitOfWork, envelope: Envelope, command: c.CancelShipment) -> None:
        async def undo():
            shipment = (await uow.session.execute(select(shipments).where(
                shipments.c.saga_id == envelope.saga_id).with_for_update())).one()
            await uow.session.execute(update(shipments).where(shipments.c.shipment_id == shipment.shipment_id).values(
                status=domain.cancel(shipment.status), updated_at=datetime.now(UTC)))
            return c.ShipmentCancelled(order_id=command.order_id)

        await participant.compensate(
            uow, envelope, step=STEP, undo=undo, refusals=(domain.ShipmentNotCancellable,),
            done=lambda: c.ShipmentCancelled(order_id=command.order_id),
            refuse=lambda reason: c.ShipmentCancellationFailed(order_id=command.order_id, reason=reason),
        )

    return {c.FulfillOrder: fulfill_order, c.CancelShipment: cancel_shipment, c.SettleStep: participant.settle(STEP)}
