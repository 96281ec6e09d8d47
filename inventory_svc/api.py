"""inventory_svc's read API, plus setting a SKU's stock level."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from messaging.service import SessionDep

from .tables import stock

router = APIRouter()
SKU = r"^[A-Z0-9][A-Z0-9-]{0,63}$"


class StockView(BaseModel):
    sku: str
    available: int
    reserved: int


class SetStock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    available: int = Field(ge=0, le=10_000_000, strict=True)


@router.get("/stock/{sku}", response_model=StockView)
async def get_stock(sku: str, session: SessionDep) -> StockView:
    row = (await session.execute(select(stock).where(stock.c.sku == sku))).first()
    if row is None:
        raise HTTPException(404, f"unknown sku {sku}")
    return StockView.model_validate(row, from_attributes=True)


@router.put("/stock/{sku}", response_model=StockView)
async def set_stock(sku: Annotated[str, Path(pattern=SKU)], body: SetStock, session: SessionDep) -> StockView:
    statement = insert(stock).values(sku=sku, available=body.available, reserved=0)
    statement = statement.on_conflict_do_update(index_elements=[stock.c.sku], set_={"available": body.available})
    row = (await session.execute(statement.returning(stock))).one()
    await session.commit()
    return StockView.model_validate(row, from_attributes=True)
