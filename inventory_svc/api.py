"""inventory_svc's API: reading and setting a SKU's stock level, for operators."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from contracts.messages import SKU_PATTERN
from messaging.http import operator_router
from messaging.service import SessionDep

from .tables import stock

router = operator_router(tags=["stock"])
Sku = Annotated[str, Path(pattern=SKU_PATTERN)]


class StockView(BaseModel):
    sku: str
    available: int
    reserved: int


class SetStock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    available: int = Field(ge=0, le=10_000_000, strict=True)


@router.get("/stock/{sku}", response_model=StockView, responses={404: {"description": "Unknown SKU"}})
async def get_stock(sku: Sku, session: SessionDep) -> StockView:
    """A SKU's stock: available, and reserved by sagas in progress."""
    row = (await session.execute(select(stock).where(stock.c.sku == sku))).first()
    if row is None:
        raise HTTPException(404, f"unknown sku {sku}")
    return StockView.model_validate(row, from_attributes=True)


@router.put("/stock/{sku}", response_model=StockView)
async def set_stock(sku: Sku, body: SetStock, session: SessionDep) -> StockView:
    """Set a SKU's available quantity (created if new); reservations are left as they are."""
    statement = insert(stock).values(sku=sku, available=body.available, reserved=0)
    statement = statement.on_conflict_do_update(index_elements=[stock.c.sku], set_={"available": body.available})
    row = (await session.execute(statement.returning(stock))).one()
    await session.commit()
    return StockView.model_validate(row, from_attributes=True)
