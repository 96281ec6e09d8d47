"""The orchestrator's persistence on real PostgreSQL: several instances, one transition each."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from contracts import messages as c
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork
from orchestrator import repository
from orchestrator.engine import SagaRegistry
from orchestrator.handlers import CLOCK_MARGIN, Orchestrator, stage_deadline_checks
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


async def staged_checks(sessions, saga_ids) -> list[tuple[uuid.UUID, Envelope]]:
    """The CheckSagaDeadlines staged for these sagas, oldest first, as (saga, envelope)."""
    async with sessions() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT saga_id, body FROM outbox WHERE message_type = 'CheckSagaDeadlines' AND saga_id = ANY(:ids) "
                    "ORDER BY id"
                ),
                {"ids": list(saga_ids)},
            )
        ).all()
    return [(row.saga_id, Envelope.model_validate_json(row.body)) for row in rows]


async def handle_check(sessions, instance: Orchestrator, envelope: Envelope) -> None:
    command = c.CheckSagaDeadlines.model_validate(envelope.payload)
    async with UnitOfWork(sessions, "orchestrator") as uow:
        await instance.check_deadlines(uow, envelope, command)
        await uow.commit()


async def test_several_orchestrators_stage_one_check_per_expired_deadline_and_it_is_judged_once(orchestrator_db):
    sessions = orchestrator_db
    definitions = StepTimeouts(reserve_inventory=0.05, saga_budget=0.05).apply(*DEFINITIONS)
    instances = [Orchestrator(SagaRegistry(*definitions)) for _ in range(3)]
    sagas = [await start(sessions, instances[0]) for _ in range(20)]
    await asyncio.sleep(0.1 + CLOCK_MARGIN.total_seconds())  # every reserve_inventory deadline has passed
    staged = await asyncio.gather(*(stage_deadline_checks(sessions, "orchestrator") for _ in instances))
    assert sum(staged) == 20  # SKIP LOCKED: each saga's check staged by one of them
    assert await stage_deadline_checks(sessions, "orchestrator") == 0  # and not again while it is on its way
    checks = await staged_checks(sessions, sagas)
    assert sorted(saga for saga, _ in checks) == sorted(sagas)
    # Handled twice (a redelivery to another replica): the second finds nothing due.
    for index, (_, envelope) in enumerate(checks + checks):
        await handle_check(sessions, instances[index % 3], envelope)
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
    assert timeouts == {saga: 1 for saga in sagas}


async def test_a_reply_handled_before_the_check_wins_and_a_check_staged_early_judges_nothing(orchestrator_db):
    sessions = orchestrator_db
    definitions = StepTimeouts(reserve_inventory=0.05, saga_budget=0.05).apply(*DEFINITIONS)
    instance = Orchestrator(SagaRegistry(*definitions))
    answered, silent = await start(sessions, instance), await start(sessions, instance)
    await asyncio.sleep(0.1 + CLOCK_MARGIN.total_seconds())
    assert await stage_deadline_checks(sessions, "orchestrator") >= 2
    checks = dict(await staged_checks(sessions, [answered, silent]))
    # The reply reached the queue before the check, in the saga's FIFO group: handled first.
    reply = c.InventoryReserved(order_id=uuid.uuid4())
    async with UnitOfWork(sessions, "orchestrator") as uow:
        state = await repository.load(uow.session, answered)
        await instance.on_reply(uow, factories.answer(state, reply, "reserve_inventory", sender="inventory"), reply)
        await uow.commit()
    for saga_id in (answered, silent):
        await handle_check(sessions, instance, checks[saga_id])
    async with sessions() as session:
        events = dict(
            (
                await session.execute(
                    text(
                        "SELECT saga_id, array_agg(event ORDER BY id) FROM saga_history WHERE saga_id = ANY(:ids) "
                        "GROUP BY saga_id"
                    ),
                    {"ids": [answered, silent]},
                )
            ).all()
        )
    assert "step_timed_out" not in events[answered] and "step_succeeded" in events[answered]
    assert "step_timed_out" in events[silent]


async def test_a_check_staged_before_the_silence_is_established_is_staged_again_once_it_can_judge(orchestrator_db):
    sessions = orchestrator_db
    definitions = StepTimeouts(reserve_inventory=0.05, saga_budget=0.05).apply(*DEFINITIONS)
    instance = Orchestrator(SagaRegistry(*definitions))
    saga_id = await start(sessions, instance)
    await asyncio.sleep(0.1)
    # A check staged (by a replica whose clock is behind) before the deadline plus the margin.
    early = Envelope.wrap(
        c.CheckSagaDeadlines(checked_at=datetime.now(UTC) - CLOCK_MARGIN), sender="orchestrator", saga_id=saga_id
    )
    await handle_check(sessions, instance, early)
    async with sessions() as session:
        row = (
            await session.execute(text("SELECT deadline_check_at, next_deadline FROM sagas WHERE saga_id = :id"), {"id": saga_id})
        ).one()
        events = (await session.execute(text("SELECT event FROM saga_history WHERE saga_id = :id"), {"id": saga_id})).scalars()
        assert "step_timed_out" not in list(events)
    assert row.deadline_check_at >= row.next_deadline + CLOCK_MARGIN  # not before it can judge
    await asyncio.sleep(max((row.deadline_check_at - datetime.now(UTC)).total_seconds(), 0) + 0.05)
    assert await stage_deadline_checks(sessions, "orchestrator") >= 1
    (_, check), *_ = [(s, e) for s, e in await staged_checks(sessions, [saga_id])][::-1]
    await handle_check(sessions, instance, check)
    async with sessions() as session:
        events = (await session.execute(text("SELECT event FROM saga_history WHERE saga_id = :id"), {"id": saga_id})).scalars()
        assert "step_timed_out" in list(events)


async def test_a_saga_survives_the_process_its_state_lives_in_the_database(orchestrator_db):
    sessions = orchestrator_db
    first = Orchestrator(SagaRegistry(*DEFINITIONS, start={"order": 1}))  # as the default settings start them
    saga_id = await start(sessions, first)
    restarted = Orchestrator(SagaRegistry(*DEFINITIONS, start={"order": 1}))  # a new process: nothing in memory
    async with UnitOfWork(sessions, "orchestrator") as uow:
        reserved = c.InventoryReserved(order_id=uuid.uuid4())
        state = await repository.load(uow.session, saga_id)
        await restarted.on_reply(uow, factories.answer(state, reserved, "reserve_inventory", sender="inventory"), reserved)
        await uow.commit()
    async with sessions() as session:
        staged = (
            (await session.execute(text("SELECT message_type FROM outbox WHERE saga_id = :id ORDER BY id"), {"id": saga_id}))
            .scalars()
            .all()
        )
    # No SagaStatusChanged: order_svc recorded the saga as running when it asked for it.
    assert staged == ["ReserveInventory", "ProcessPayment"]


async def test_a_replica_stages_checks_only_for_the_versions_it_runs_and_counts_the_others(orchestrator_db):
    sessions = orchestrator_db
    definitions = StepTimeouts(reserve_inventory=0.05, saga_budget=0.05).apply(*DEFINITIONS)
    v1 = Orchestrator(SagaRegistry(*[d for d in definitions if (d.name, d.version) != ("order", 2)], start={"order": 1}))
    v2 = Orchestrator(SagaRegistry(*definitions, start={"order": 2}))
    old, new = await start(sessions, v1), await start(sessions, v2)
    await asyncio.sleep(0.1 + CLOCK_MARGIN.total_seconds())
    runs_v1 = [("order", 1), ("order_cancellation", 1)]
    # A replica of the older release stages nothing for the v2 saga: it would only bounce it.
    await stage_deadline_checks(sessions, "orchestrator", runs_v1)
    assert {saga for saga, _ in await staged_checks(sessions, [old, new])} == {old}
    async with sessions() as session:
        assert await repository.count_not_run(session, runs_v1) >= 1  # the v2 saga: the alarm's gauge
        assert await repository.count_not_run(session, [*runs_v1, ("order", 2)]) == 0
    # A replica that runs v2 stages its check.
    await stage_deadline_checks(sessions, "orchestrator", [*runs_v1, ("order", 2)])
    assert {saga for saga, _ in await staged_checks(sessions, [old, new])} == {old, new}
