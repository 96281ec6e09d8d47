"""fulfillment_svc's API: shipments, and the warehouse's dispatch and return events, for operators."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from fastapi import HTTPException
from pydantic import BaseModel
from sqlalchemy import select, update

from contracts.messages import Line
from messaging.http import Responses, operator_router
from messaging.service import SessionDep

from . import domain
from .tables import shipments

router = operator_router(tags=["shipments"])
TRANSITION_ERRORS: Responses = {
    404: {"description": "No such shipment"},
    409: {"description": "Not allowed in the shipment's status"},
}


class ShipmentView(BaseModel):
    shipment_id: uuid.UUID
    order_id: uuid.UUID
    status: str
    country: str
    items: list[Line]
    delivery_date: date
    created_at: datetime
    updated_at: datetime


@router.get("/shipments", response_model=list[ShipmentView])
async def list_shipments(order_id: uuid.UUID, session: SessionDep) -> list[ShipmentView]:
    """An order's shipments."""
    rows = await session.execute(select(shipments).where(shipments.c.order_id == order_id))
    return [ShipmentView.model_validate(r, from_attributes=True) for r in rows]


async def _transition(shipment_id: uuid.UUID, session, change) -> ShipmentView:
    row = (await session.execute(select(shipments).where(shipments.c.shipment_id == shipment_id).with_for_update())).first()
    if row is None:
        raise HTTPException(404, f"no shipment {shipment_id}")
    try:
        status = change(row.status)
    except domain.InvalidTransition as error:
        raise HTTPException(409, str(error)) from error
    updated = (
        await session.execute(
            update(shipments)
            .where(shipments.c.shipment_id == shipment_id)
            .values(status=status, updated_at=datetime.now(UTC))
            .returning(shipments)
        )
    ).one()
    await session.commit()
    return ShipmentView.model_validate(updated, from_attributes=True)


@router.post("/shipments/{shipment_id}/dispatch", response_model=ShipmentView, responses=TRANSITION_ERRORS)
async def dispatch(shipment_id: uuid.UUID, session: SessionDep) -> ShipmentView:
    """The warehouse handed the parcel to the carrier: past this point it cannot be cancelled."""
    return await _transition(shipment_id, session, domain.dispatch)


@router.post("/shipments/{shipment_id}/return", response_model=ShipmentView, responses=TRANSITION_ERRORS)
async def mark_returned(shipment_id: uuid.UUID, session: SessionDep) -> ShipmentView:
    """The parcel came back; its cancellation (a compensation) can now succeed."""
    return await _transition(shipment_id, session, domain.mark_returned)
