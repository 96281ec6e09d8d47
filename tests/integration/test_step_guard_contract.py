"""The step guard's behaviour, one suite run against the in-memory fake and PostgreSQL: what
the fake lets handler tests assume is what the real table does."""

from __future__ import annotations

import uuid

import pytest

from contracts import messages as c
from contracts import steps
from messaging import participant
from messaging.envelope import Envelope
from messaging.fakes import FakeUnitOfWork
from messaging.guard import FakeStepGuard
from messaging.uow import UnitOfWork
from tests import factories
from tests.factories import LINE

pytestmark = pytest.mark.integration
STEP = steps.RESERVE_INVENTORY


class Refused(Exception):
    pass


class Participant:
    """A participant whose step and undo count their effects, over one kind of unit of work."""

    def __init__(self, new_uow) -> None:
        self.new_uow = new_uow
        self.applied = self.undone = 0
        self.refuse_forward = self.refuse_undo = False

    async def forward(self, saga_id: uuid.UUID) -> c.Reply:
        async def apply():
            if self.refuse_forward:
                raise Refused("not enough stock")
            self.applied += 1
            return c.InventoryReserved(order_id=ORDER)

        async with self.new_uow() as uow:
            reply = await participant.forward(
                uow,
                command(saga_id, c.ReserveInventory(order_id=ORDER, items=[LINE])),
                step=STEP,
                apply=apply,
                refuse=lambda reason: c.InventoryReservationFailed(order_id=ORDER, reason=reason),
                refusals=(Refused,),
            )
            await uow.commit()
        return reply

    async def compensate(self, saga_id: uuid.UUID) -> c.Reply:
        async def undo():
            if self.refuse_undo:
                raise Refused("already dispatched")
            self.undone += 1
            return c.InventoryReleased(order_id=ORDER)

        async with self.new_uow() as uow:
            reply = await participant.compensate(
                uow,
                command(saga_id, c.ReleaseInventory(order_id=ORDER)),
                step=STEP,
                undo=undo,
                done=lambda: c.InventoryReleased(order_id=ORDER),
                refuse=lambda reason: c.InventoryReservationFailed(order_id=ORDER, reason=reason),
                refusals=(Refused,),
            )
            await uow.commit()
        return reply


ORDER = uuid.uuid4()


def command(saga_id: uuid.UUID, message) -> Envelope:
    return factories.command(saga_id, message, STEP.name)


@pytest.fixture(params=["fake", "postgres"])
def step(request) -> Participant:
    if request.param == "fake":
        guard = FakeStepGuard()
        return Participant(lambda: FakeUnitOfWork("inventory", guard))
    sessions = request.getfixturevalue("sessions")
    return Participant(lambda: UnitOfWork(sessions, "inventory"))


async def test_a_repeated_command_gets_the_same_reply_and_no_second_effect(step):
    saga = uuid.uuid4()
    first, again = await step.forward(saga), await step.forward(saga)
    assert type(first) is type(again) is c.InventoryReserved and step.applied == 1


async def test_a_refusal_is_remembered_and_a_compensation_of_it_undoes_nothing(step):
    saga = uuid.uuid4()
    step.refuse_forward = True
    refused = await step.forward(saga)
    step.refuse_forward = False
    assert isinstance(refused, c.InventoryReservationFailed) and refused.reason == "not enough stock"
    assert isinstance(await step.forward(saga), c.InventoryReservationFailed) and step.applied == 0
    assert isinstance(await step.compensate(saga), c.InventoryReleased) and step.undone == 0


async def test_a_compensation_that_overtakes_its_command_makes_the_command_refused(step):
    saga = uuid.uuid4()
    assert isinstance(await step.compensate(saga), c.InventoryReleased)
    late = await step.forward(saga)
    assert isinstance(late, c.InventoryReservationFailed) and late.reason == "compensated before it was applied"
    assert step.applied == 0 and step.undone == 0


async def test_a_compensation_undoes_once_however_often_it_is_sent(step):
    saga = uuid.uuid4()
    await step.forward(saga)
    await step.compensate(saga)
    await step.compensate(saga)
    assert step.applied == 1 and step.undone == 1


async def test_a_refused_compensation_leaves_the_step_applied_for_a_later_retry(step):
    saga = uuid.uuid4()
    await step.forward(saga)
    step.refuse_undo = True
    refused = await step.compensate(saga)
    assert isinstance(refused, c.InventoryReservationFailed) and refused.reason == "already dispatched"
    step.refuse_undo = False
    assert isinstance(await step.compensate(saga), c.InventoryReleased) and step.undone == 1
