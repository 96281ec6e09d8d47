"""The orchestrator's persistence on real PostgreSQL: several instances, one transition each."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from contracts import messages as c
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork
from orchestrator.engine import SagaRegistry
from orchestrator.handlers import Orchestrator, fire_due_deadlines
from orchestrator.main import DEFINITIONS
from orchestrator.settings import StepTimeouts
from tests import factories

pytestmark = pytest.mark.integration


async def start(sessions, orchestrator: Orchestrator) -> uuid.UUID:
    command = factories.start_order_saga()
    envelope = Envelope.wrap(command, sender="order", saga_id=uuid.uuid4())
    async with UnitOfWork(sessions, "orchestrator") as uow:
        await orchestrator.start(uow, envelope, command)
        await uow.commit()
    return envelope.saga_id


async def test_each_expired_deadline_is_handled_once_by_several_orchestrators(orchestrator_db):
    sessions = orchestrator_db
    definitions = StepTimeouts(reserve_inventory=0.05, saga_budget=0.05).apply(*DEFINITIONS)
    instances = [Orchestrator(SagaRegistry(*definitions)) for _ in range(3)]
    sagas = [await start(sessions, instances[0]) for _ in range(20)]
    await asyncio.sleep(0.1)  # every reserve_inventory deadline has passed

    async def worker(instance):
        total = 0
        while handled := await fire_due_deadlines(sessions, instance, "orchestrator"):
            total += handled
        return total

    handled = await asyncio.gather(*(worker(i) for i in instances))
    async with sessions() as session:
        timeouts = dict(
            (
                await session.execute(
                    text(
                        "SELECT saga_id, count(*) FROM saga_history WHERE event = 'step_timed_out' AND saga_id = ANY(:ids) "
                        "GROUP BY saga_id"
                    ),
                    {"ids": sagas},
                )
            ).all()
        )
        # The compensation's own short deadline may expire and be retried meanwhile; each
        # retry must also have happened once: no (saga, step, attempt) twice.
        repeated = (
            await session.execute(
                text(
                    "SELECT saga_id, step, detail FROM saga_history WHERE event = 'compensation_sent' AND saga_id = ANY(:ids) "
                    "GROUP BY saga_id, step, detail HAVING count(*) > 1"
                ),
                {"ids": sagas},
            )
        ).all()
    assert timeouts == {saga: 1 for saga in sagas}
    assert repeated == []
    assert sum(handled) >= 20


async def test_a_saga_survives_the_process_its_state_lives_in_the_database(orchestrator_db):
    sessions = orchestrator_db
    first = Orchestrator(SagaRegistry(*DEFINITIONS))
    saga_id = await start(sessions, first)
    reply = Envelope.wrap(c.InventoryReserved(order_id=uuid.uuid4()), sender="inventory", saga_id=saga_id)
    restarted = Orchestrator(SagaRegistry(*DEFINITIONS))  # a new process: nothing in memory
    async with UnitOfWork(sessions, "orchestrator") as uow:
        await restarted.on_reply(uow, reply, c.InventoryReserved(order_id=uuid.uuid4()))
        await uow.commit()
    async with sessions() as session:
        staged = (
            (await session.execute(text("SELECT message_type FROM outbox WHERE saga_id = :id ORDER BY id"), {"id": saga_id}))
            .scalars()
            .all()
        )
    # No SagaStatusChanged: order_svc recorded the saga as running when it asked for it.
    assert staged == ["ReserveInventory", "ProcessPayment"]


async def test_a_silence_not_yet_judgeable_costs_no_transaction_until_the_replies_are_read(orchestrator_db):
    sessions = orchestrator_db
    definitions = StepTimeouts(reserve_inventory=0.05, saga_budget=0.05).apply(*DEFINITIONS)
    instance = Orchestrator(SagaRegistry(*definitions))
    saga_id = await start(sessions, instance)
    await asyncio.sleep(0.1)  # its deadline has passed, but the replies are read only up to 0
    opened: list = []
    instance.on_deadline = _counting(instance.on_deadline, saga_id, opened)  # type: ignore[method-assign]
    waiting: dict = {}
    await fire_due_deadlines(sessions, instance, "orchestrator", lambda now: 0.0, waiting)
    assert saga_id in waiting and len(opened) == 1
    await fire_due_deadlines(sessions, instance, "orchestrator", lambda now: 0.0, waiting)
    assert len(opened) == 1  # parked: not looked at again while the cutoff has not moved past it
    await fire_due_deadlines(sessions, instance, "orchestrator", lambda now: now, waiting)
    assert saga_id not in waiting and len(opened) == 2
    async with sessions() as session:
        events = (await session.execute(text("SELECT event FROM saga_history WHERE saga_id = :id"), {"id": saga_id})).scalars()
        assert "step_timed_out" in list(events)


def _counting(method, saga_id: uuid.UUID, calls: list):
    async def counted(uow, candidate, *args, **kwargs):
        if candidate == saga_id:
            calls.append(candidate)
        return await method(uow, candidate, *args, **kwargs)

    return counted
