"""inventory_svc's message handlers: the order saga's reserve_inventory and its compensation;
the cancellation saga's return_reserved_stock; SettleStep for both."""

from __future__ import annotations

from sqlalchemy import select, update

from contracts import messages as c
from contracts import steps
from contracts.topology import INVENTORY_COMMANDS
from messaging import erasure, participant
from messaging.bus import Handlers
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork

from . import domain
from .tables import reservations, stock


async def _levels(uow: UnitOfWork, skus) -> dict[str, domain.Level]:
    # Lock in a fixed order so two reservations touching the same SKUs cannot deadlock.
    query = select(stock).where(stock.c.sku.in_(sorted(skus))).order_by(stock.c.sku).with_for_update()
    return {r.sku: domain.Level(r.available, r.reserved) for r in await uow.session.execute(query)}


async def _store(uow: UnitOfWork, levels: dict[str, domain.Level]) -> None:
    for sku, level in levels.items():
        await uow.session.execute(
            update(stock).where(stock.c.sku == sku).values(available=level.available, reserved=level.reserved)
        )


async def reserve_inventory(uow: UnitOfWork, envelope: Envelope, command: c.ReserveInventory) -> None:
    wanted = {line.sku: line.quantity for line in command.items}

    async def apply():
        await _store(uow, domain.reserve(await _levels(uow, wanted), wanted))
        await uow.session.execute(
            reservations.insert(),
            [{"saga_id": envelope.saga_id, "order_id": command.order_id, "sku": sku, "quantity": q} for sku, q in wanted.items()],
        )
        return c.InventoryReserved(order_id=command.order_id)

    await participant.forward(
        uow,
        envelope,
        step=steps.RESERVE_INVENTORY,
        apply=apply,
        refusals=(domain.ReservationRefused,),
        refuse=lambda reason: c.InventoryReservationFailed(order_id=command.order_id, reason=reason),
    )


async def _release(uow: UnitOfWork, which) -> None:
    held_rows = await uow.session.execute(
        reservations.delete().where(which).returning(reservations.c.sku, reservations.c.quantity)
    )
    held = {r.sku: r.quantity for r in held_rows}
    await _store(uow, domain.release(await _levels(uow, held), held))


async def release_inventory(uow: UnitOfWork, envelope: Envelope, command: c.ReleaseInventory) -> None:
    async def undo():
        await _release(uow, reservations.c.saga_id == envelope.saga_id)
        return c.InventoryReleased(order_id=command.order_id)

    await participant.compensate(
        uow,
        envelope,
        step=steps.RESERVE_INVENTORY,
        undo=undo,
        done=lambda: c.InventoryReleased(order_id=command.order_id),
    )


async def return_reserved_stock(uow: UnitOfWork, envelope: Envelope, command: c.ReturnReservedStock) -> None:
    async def apply():
        await _release(uow, reservations.c.order_id == command.order_id)
        return c.ReservedStockReturned(order_id=command.order_id)

    # No business refusal: reserved stock can always go back, so ``refuse`` is never used.
    await participant.forward(
        uow,
        envelope,
        step=steps.RETURN_RESERVED_STOCK,
        apply=apply,
        refusals=(),
        refuse=lambda reason: c.ReservedStockReturned(order_id=command.order_id),
    )


PERSONAL_DATA: tuple[erasure.PersonalData, ...] = ()
"""Stock and reservations name no person."""


HANDLERS: Handlers = participant.handlers(
    steps.owned_by(INVENTORY_COMMANDS),
    {
        c.ReserveInventory: reserve_inventory,
        c.ReleaseInventory: release_inventory,
        c.ReturnReservedStock: return_reserved_stock,
    },
    settle_with=(c.SettleStep, c.step_settled),
    erase_with=(c.EraseCustomerData, c.customer_data_erased),
    personal_data=PERSONAL_DATA,
)
