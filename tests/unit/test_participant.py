"""The participant side of a step on the fake unit of work: no database, milliseconds."""

from __future__ import annotations

import uuid

from contracts import messages as c
from messaging import participant
from messaging.fakes import FakeUnitOfWork
from tests import factories
from tests.factories import LINE

ORDER, STEP = uuid.uuid4(), "reserve_inventory"


def command(saga_id, message):
    return factories.command(saga_id, message, STEP)


async def test_every_answer_goes_to_the_reply_queue_with_its_step_and_attempt():
    uow = FakeUnitOfWork("inventory")
    saga = uuid.uuid4()
    async with uow:
        await participant.forward(
            uow,
            command(saga, c.ReserveInventory(order_id=ORDER, items=[LINE])),
            step=STEP,
            apply=_reserved,
            refuse=lambda r: c.InventoryReservationFailed(order_id=ORDER, reason=r),
            refusals=(),
        )
        await uow.commit()
    [sent] = uow.sent
    assert (sent.to, sent.message_type, sent.envelope.step, sent.envelope.attempt) == (
        "queue:orchestrator-replies",
        "InventoryReserved",
        STEP,
        1,
    )


async def _reserved():
    return c.InventoryReserved(order_id=ORDER)


async def test_without_a_commit_nothing_is_sent():
    uow = FakeUnitOfWork("inventory")
    async with uow:
        await participant.forward(
            uow,
            command(uuid.uuid4(), c.ReserveInventory(order_id=ORDER, items=[LINE])),
            step=STEP,
            apply=_reserved,
            refusals=(),
            refuse=lambda r: c.InventoryReservationFailed(order_id=ORDER, reason=r),
        )
    assert uow.sent == [] and not uow.committed
