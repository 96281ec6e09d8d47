"""Old and new orchestrators side by side on real PostgreSQL and the emulator: a saga runs on
the version it started with, and a release that does not know that version leaves its
messages, at once and without counting a failure, for one that does."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from contracts import messages as c
from messaging.bus import MessageBus
from messaging.consumer import NOT_MINE_DELAY, Consumer
from messaging.envelope import Envelope
from messaging.received import NotMine, Received
from messaging.relay import Relay
from messaging.uow import UnitOfWork
from orchestrator import repository
from orchestrator.cancellation_saga import cancellation_saga
from orchestrator.engine import SagaRegistry, SagaState
from orchestrator.handlers import Orchestrator
from orchestrator.order_saga import order_saga
from tests import factories
from tests.unit.test_saga_versions import with_an_added_step

pytestmark = pytest.mark.integration
OLD = Orchestrator(SagaRegistry(order_saga(), cancellation_saga()))
"""The release before: the order saga's version 1 only."""
NEW = Orchestrator(SagaRegistry(order_saga(), with_an_added_step(order_saga(), version=2), cancellation_saga()))
"""The release after: version 2 for new sagas, version 1 kept for those in flight."""


def bus(orchestrator: Orchestrator, sessions) -> MessageBus:
    return MessageBus(consumer="orchestrator", sender="orchestrator", sessions=sessions, handlers=orchestrator.handlers())


async def start(orchestrator: Orchestrator, sessions) -> uuid.UUID:
    command = factories.start_order_saga()
    envelope = Envelope.wrap(command, sender="order", saga_id=uuid.uuid4())
    [outcome] = await bus(orchestrator, sessions).handle_batch([Received(envelope.model_dump_json())])
    assert outcome is None
    return envelope.saga_id


def reply(state: SagaState) -> str:
    reserved = c.InventoryReserved(order_id=uuid.UUID(state.data["order_id"]))
    return factories.answer(state, reserved, "reserve_inventory", sender="inventory", attempt=1).model_dump_json()


async def saga(sessions, saga_id):
    async with sessions() as session:
        return await repository.load(session, saga_id, lock=False)


async def test_each_saga_runs_on_its_version_and_an_old_release_leaves_a_new_versions_messages(orchestrator_db):
    sessions = orchestrator_db
    before = await start(OLD, sessions)  # started by the old release: version 1
    after = await start(NEW, sessions)  # started by the new release: version 2
    assert (await saga(sessions, before)).version == 1 and (await saga(sessions, after)).version == 2

    # The old release meets the new saga's reply: it leaves it, and changes nothing.
    new_state = await saga(sessions, after)
    [left] = await bus(OLD, sessions).handle_batch([Received(reply(new_state))])
    assert isinstance(left, NotMine) and "version 2 is not registered here" in str(left)
    assert (await saga(sessions, after)).step("reserve_inventory").status == "running"

    # The new release handles both: each saga takes the path of the version it started on.
    for saga_id in (before, after):
        state = await saga(sessions, saga_id)
        [outcome] = await bus(NEW, sessions).handle_batch([Received(reply(state))])
        assert outcome is None
    async with sessions() as session:
        staged = dict(
            (
                await session.execute(
                    text(
                        "SELECT saga_id, message_type FROM outbox WHERE saga_id = ANY(:ids) "
                        "AND message_type IN ('ProcessPayment', 'ReturnReservedStock')"
                    ),
                    {"ids": [before, after]},
                )
            ).all()
        )
    assert staged == {before: "ProcessPayment", after: "ReturnReservedStock"}


async def test_a_message_left_for_another_release_is_handed_back_after_a_pause_not_as_a_failure(sessions, broker, queue):
    async with UnitOfWork(sessions, "test") as uow:
        sent = await uow.send(c.ReleaseInventory(order_id=uuid.uuid4()), f"queue:{queue}", saga_id=uuid.uuid4())
        await uow.commit()
    await Relay(sessions, broker, service="relay").publish_pending()
    seen: list[uuid.UUID] = []

    async def old_release(uow, envelope, message):
        seen.append(envelope.message_id)
        raise NotMine("saga definition 'order' version 2 is not registered here")

    old = MessageBus(consumer="old", sender="test", sessions=sessions, handlers={c.ReleaseInventory: old_release})
    # Even a consumer that dead-letters after one failure does not count this one.
    consumer = Consumer(broker, queue, batch=old.handle_batch, service="test", wait_time_seconds=1, dead_letter_after=1)
    await consumer.poll_once()
    assert seen == [sent.message_id]
    url = await broker.queue_url(queue)
    # Not at once: a process of the other release gets a moment to take it instead of this one
    # bouncing it back, receive after receive, towards the dead-letter queue.
    assert not (await broker.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)).get("Messages")
    response = await broker.sqs.receive_message(
        QueueUrl=url, WaitTimeSeconds=NOT_MINE_DELAY + 2, MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )
    [again] = response["Messages"]
    assert Envelope.model_validate_json(again["Body"]).message_id == sent.message_id
    dlq = await broker.queue_url(f"{queue}-dlq")
    assert not (await broker.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0)).get("Messages")
