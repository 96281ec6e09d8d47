"""The orchestrator's persistence on real PostgreSQL: several instances, one transition each."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from messaging import contracts as c
from messaging import migrations
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork
from orchestrator.engine import SagaEngine
from orchestrator.handlers import Orchestrator, fire_due_deadlines
from orchestrator.order_saga import order_saga
from orchestrator.settings import StepTimeouts
from stack import infra

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def orchestrator_url(postgres_server):
    prefix = f"it{uuid.uuid4().hex[:8]}"
    yield infra.database_urls(postgres_server, prefix, ["orchestrator"])["orchestrator"]
    infra.drop_databases(postgres_server, prefix, ["orchestrator"])


@pytest.fixture(scope="module")
async def orchestrator_db(orchestrator_url):
    engine = create_async_engine(orchestrator_url, pool_size=10)
    async with engine.begin() as connection:
        await connection.run_sync(migrations.upgrade, "orchestrator")
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


def start_command() -> c.StartOrderSaga:
    return c.StartOrderSaga(
        order_id=uuid.uuid4(), customer_id="c-1", customer_email="ada@example.com", currency="USD",
        items=[{"sku": "SKU-1", "quantity": 1, "unit_price": "5.00"}], total="5.00", payment_token="tok_visa",
        shipping_address={"name": "Ada", "line1": "1 Main St", "city": "X", "postal_code": "1", "country": "US"})


async def start(sessions, orchestrator: Orchestrator) -> uuid.UUID:
    envelope = Envelope.wrap(start_command(), sender="order", saga_id=uuid.uuid4())
    async with UnitOfWork(sessions, "orchestrator") as uow:
        await orchestrator.start(uow, envelope, start_command())
        await uow.commit()
    return envelope.saga_id


async def test_each_expired_deadline_is_handled_once_by_several_orchestrators(orchestrator_db):
    sessions = orchestrator_db
    instances = [Orchestrator(SagaEngine(order_saga(StepTimeouts(reserve_inventory=0.05, saga_budget=0.05)))) for _ in range(3)]
    sagas = [await start(sessions, instances[0]) for _ in range(20)]
    await asyncio.sleep(0.1)  # every reserve_inventory deadline has passed

    async def worker(instance):
        total = 0
        while handled := await fire_due_deadlines(sessions, instance, "orchestrator"):
            total += handled
        return total

    handled = await asyncio.gather(*(worker(i) for i in instances))
    async with sessions() as session:
        timeouts = dict((await session.execute(text(
            "SELECT saga_id, count(*) FROM saga_history WHERE event = 'step_timed_out' AND saga_id = ANY(:ids) "
            "GROUP BY saga_id"), {"ids": sagas})).all())
        # The compensation's own short deadline may expire and be retried meanwhile; each
        # retry must also have happened once: no (saga, step, attempt) twice.
        repeated = (await session.execute(text(
            "SELECT saga_id, step, detail FROM saga_history WHERE event = 'compensation_sent' AND saga_id = ANY(:ids) "
            "GROUP BY saga_id, step, detail HAVING count(*) > 1"), {"ids": sagas})).all()
    assert timeouts == {saga: 1 for saga in sagas}
    assert repeated == []
    assert sum(handled) >= 20


async def test_a_saga_survives_the_process_its_state_lives_in_the_database(orchestrator_db):
    sessions = orchestrator_db
    first = Orchestrator(SagaEngine(order_saga()))
    saga_id = await start(sessions, first)
    reply = Envelope.wrap(c.InventoryReserved(order_id=uuid.uuid4()), sender="inventory", saga_id=saga_id)
    restarted = Orchestrator(SagaEngine(order_saga()))  # a new process: nothing in memory
    async with UnitOfWork(sessions, "orchestrator") as uow:
        await restarted.on_reply(uow, reply, c.InventoryReserved(order_id=uuid.uuid4()))
        await uow.commit()
    async with sessions() as session:
        staged = (await session.execute(text(
            "SELECT message_type FROM outbox WHERE saga_id = :id ORDER BY id"), {"id": saga_id})).scalars().all()
    assert staged == ["ReserveInventory", "ProcessPayment"]
