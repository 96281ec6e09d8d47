"""The participant side of a step on the fake unit of work: no database, milliseconds."""

from __future__ import annotations

import uuid

from contracts import messages as c
from contracts import steps
from messaging import participant
from messaging.fakes import FakeUnitOfWork
from tests import factories
from tests.factories import LINE

ORDER, STEP = uuid.uuid4(), steps.RESERVE_INVENTORY


def command(saga_id, message):
    return factories.command(saga_id, message, STEP.name)


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
        STEP.name,
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


async def test_a_saga_started_under_a_former_step_name_keeps_its_guard_rows_under_it():
    """The cancellation saga's refund was ``refund_payment`` before it was ``refund_charge``: a
    saga that started then sends its resends under the old name, and they find the old row."""
    step, saga, applied = steps.REFUND_CHARGE, uuid.uuid4(), []

    async def refund():
        applied.append(1)
        return c.ChargeRefunded(order_id=ORDER, amount="1.00")

    uow = FakeUnitOfWork("payment")
    for name in ("refund_payment", "refund_payment"):  # the command and its resend
        async with uow:
            await participant.forward(
                uow,
                factories.command(saga, c.RefundCharge(order_id=ORDER), name),
                step=step,
                apply=refund,
                refusals=(),
                refuse=lambda r: c.ChargeRefundFailed(order_id=ORDER, reason=r),
            )
            await uow.commit()
    assert applied == [1] and [s.envelope.step for s in uow.sent] == ["refund_payment"] * 2
    assert set(uow.guard.rows) == {(saga, "refund_payment")}  # type: ignore[attr-defined]
