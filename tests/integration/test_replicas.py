"""Several processes of one service on one queue: the FIFO group order that deadline checks rely
on, seen from two readers at once, and a sibling's relay publishing what a dead replica committed.

Each reader here is a real :class:`Consumer` on the emulator's FIFO queue; a reader that
"holds" a message is one whose handler has not returned, or one that received it and died.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from contracts import messages as c
from contracts.topology import Naming
from messaging.aws import open_broker
from messaging.bus import MessageBus
from messaging.consumer import Consumer
from messaging.database import asyncpg_dsn
from messaging.relay import Relay
from messaging.settings import ServiceSettings
from messaging.uow import UnitOfWork

pytestmark = pytest.mark.integration


@pytest.fixture
async def fifo(naming):
    """A fresh FIFO queue (with its FIFO dead-letter queue, maxReceiveCount 3) and a broker that knows it."""
    name = f"f{uuid.uuid4().hex[:8]}"
    async with open_broker(Naming(naming.prefix, fifo=frozenset({name}))) as broker:
        physical = broker.naming.physical
        dlq = await broker.sqs.create_queue(QueueName=physical(f"{name}-dlq"), Attributes={"FifoQueue": "true"})
        arn = (await broker.sqs.get_queue_attributes(QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"]))["Attributes"]
        await broker.sqs.create_queue(
            QueueName=physical(name),
            Attributes={
                "FifoQueue": "true",
                "VisibilityTimeout": "30",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn["QueueArn"], "maxReceiveCount": 3}),
            },
        )
        yield broker, name


class Recorder:
    """Handlers for a reply (ReleaseInventory plays it) and a deadline check, recording the order
    in which they took effect; a reply's handler can be held, or made to fail, from the test."""

    def __init__(self, sessions) -> None:
        self.sessions = sessions
        self.handled: list[str] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.holding = asyncio.Event()
        self.fail_next = 0

    async def reply(self, uow, envelope, message) -> None:
        self.holding.set()
        await self.hold.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("connection dropped")  # transient: released with a backoff
        self.handled.append("reply")

    async def check(self, uow, envelope, message) -> None:
        self.handled.append("check")

    def consumer(self, broker, queue: str, name: str) -> Consumer:
        handlers = {c.ReleaseInventory: self.reply, c.CheckSagaDeadlines: self.check}
        bus = MessageBus(consumer=f"replicas-{self.id}", sender=name, sessions=self.sessions, handlers=handlers)
        return Consumer(broker, queue, bus.handle, service=name, wait_time_seconds=1, visibility_timeout=4, fifo=True)

    id = uuid.uuid4().hex[:6]


async def stage_reply_then_check(sessions, broker, queue: str) -> uuid.UUID:
    """A saga's reply, then its deadline check, staged and published in that order through the relay."""
    saga_id = uuid.uuid4()
    for message in (c.ReleaseInventory(order_id=uuid.uuid4()), c.CheckSagaDeadlines(checked_at=datetime.now(UTC))):
        async with UnitOfWork(sessions, "test") as uow:
            await uow.send(message, f"queue:{queue}", saga_id=saga_id)
            await uow.commit()
        await Relay(sessions, broker, service="relay").publish_pending()
    return saga_id


async def run_until(consumers: list[Consumer], done, seconds: float = 30) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(consumer.run(stop)) for consumer in consumers]
    try:
        async with asyncio.timeout(seconds):
            while not done():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_a_check_waits_behind_a_reply_its_sibling_holds_then_fails_on(sessions, fifo):
    broker, queue = fifo
    recorder = Recorder(sessions)
    await stage_reply_then_check(sessions, broker, queue)
    recorder.hold.clear()
    recorder.fail_next = 1
    holder, sibling = recorder.consumer(broker, queue, "b"), recorder.consumer(broker, queue, "a")
    stop = asyncio.Event()
    holding = asyncio.create_task(holder.run(stop))
    await asyncio.wait_for(recorder.holding.wait(), 10)  # b has the reply, its handler is stuck
    stop.set()  # b receives nothing more; what it holds stays in flight
    # a reads the queue meanwhile, again and again: the check is not handed out behind the reply.
    for _ in range(4):
        assert await sibling.poll_once() == 0
    assert recorder.handled == []
    recorder.hold.set()  # b's handler now fails (a dropped connection): the reply waits out a backoff
    await asyncio.wait_for(holding, 10)
    await run_until([sibling], lambda: len(recorder.handled) == 2)
    assert recorder.handled == ["reply", "check"]


async def test_a_check_waits_behind_a_reply_whose_reader_died_with_it(sessions, fifo):
    broker, queue = fifo
    recorder = Recorder(sessions)
    await stage_reply_then_check(sessions, broker, queue)
    url = await broker.queue_url(queue)
    # A replica receives the reply and is killed before it handles or hands back anything.
    taken = await broker.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=3, WaitTimeSeconds=1)
    assert [json.loads(m["Body"])["message_type"] for m in taken["Messages"]] == ["ReleaseInventory"]
    survivor = recorder.consumer(broker, queue, "a")
    assert await survivor.poll_once() == 0  # the check is not handed out while the dead one's reply is hidden
    await run_until([survivor, recorder.consumer(broker, queue, "c")], lambda: len(recorder.handled) == 2)
    assert recorder.handled == ["reply", "check"]


async def test_a_groups_messages_in_one_batch_are_handled_in_order_and_stop_at_a_failure(sessions, fifo):
    broker, queue = fifo
    recorder = Recorder(sessions)
    await stage_reply_then_check(sessions, broker, queue)
    recorder.fail_next = 1
    reader = recorder.consumer(broker, queue, "a")
    assert await reader.poll_once() == 2  # one receive brought both: the reply failed, the check went back unhandled
    assert recorder.handled == []
    await run_until([reader, recorder.consumer(broker, queue, "b")], lambda: len(recorder.handled) == 2)
    assert recorder.handled == ["reply", "check"]


async def test_rows_a_dead_replica_committed_are_published_by_a_siblings_full_pass(sessions, broker, queue, database_url):
    """No commit of the sibling's process announced them (the replica died right after its commit)."""
    interval = ServiceSettings.model_fields["relay_poll_interval"].default
    assert interval <= 3, "a sibling's full pass comes within a few seconds"
    relay = Relay(sessions, broker, service="sibling", poll_interval=interval)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    await asyncio.sleep(0.3)  # its first full pass is done: it now waits for a commit of its own, or the next pass
    message_id = uuid.uuid4()
    connection = await asyncpg.connect(asyncpg_dsn(database_url))  # another process's commit: announced to nobody here
    try:
        await connection.execute(
            "INSERT INTO outbox (message_id, destination, message_type, body, attributes) VALUES ($1, $2, 'X', '{}', '{}')",
            message_id,
            f"queue:{queue}",
        )
        async with asyncio.timeout(2 * interval + 5):
            while await connection.fetchval("SELECT published_at IS NULL FROM outbox WHERE message_id = $1", message_id):
                await asyncio.sleep(0.1)
    finally:
        await connection.close()
        stop.set()
        await asyncio.wait_for(running, 10)


class FailingHead:
    """handle_batch's handlers for a saga's group where one reply (the head) always fails."""

    def __init__(self, sessions, bad: uuid.UUID) -> None:
        self.sessions = sessions
        self.bad = bad
        self.events: list[str] = []

    async def reply(self, uow, envelope, message) -> None:
        if message.order_id == self.bad:
            self.events.append("head failed")
            raise ValueError("a bug in this message's handler")
        self.events.append("reply")

    async def check(self, uow, envelope, message) -> None:
        self.events.append("check")

    def consumer(self, broker, queue: str, name: str, dead_letter_after: int | None) -> Consumer:
        handlers = {c.ReleaseInventory: self.reply, c.CheckSagaDeadlines: self.check}
        bus = MessageBus(consumer=f"head-{uuid.uuid4().hex[:6]}", sender=name, sessions=self.sessions, handlers=handlers)
        return Consumer(
            broker,
            queue,
            batch=bus.handle_batch,  # the production path
            service=name,
            wait_time_seconds=1,
            visibility_timeout=4,
            fifo=True,
            dead_letter_after=dead_letter_after,
        )


async def test_a_failing_head_is_dead_lettered_with_its_reason_and_its_group_goes_on_in_order(sessions, fifo):
    broker, queue = fifo
    saga_id, bad = uuid.uuid4(), uuid.uuid4()
    # One receive brings the whole group: the head, then a check and a reply behind it.
    for message in (
        c.ReleaseInventory(order_id=bad),
        c.CheckSagaDeadlines(checked_at=datetime.now(UTC)),
        c.ReleaseInventory(order_id=uuid.uuid4()),
    ):
        async with UnitOfWork(sessions, "test") as uow:
            await uow.send(message, f"queue:{queue}", saga_id=saga_id)
            await uow.commit()
    await Relay(sessions, broker, service="relay").publish_pending()
    handlers = FailingHead(sessions, bad)
    await run_until([handlers.consumer(broker, queue, "a", dead_letter_after=2)], lambda: "reply" in handlers.events)
    # Twice the head failed and its followers waited, untried; then it left and they went on, in order.
    assert handlers.events == ["head failed", "head failed", "check", "reply"]
    dlq = await broker.queue_url(f"{queue}-dlq")
    dead = await broker.sqs.receive_message(
        QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
    )
    assert len(dead.get("Messages", [])) == 1, "the head alone: its followers were handled, not dead-lettered"
    [message] = dead["Messages"]
    assert json.loads(message["Body"])["message_type"] == "ReleaseInventory"
    reason = json.loads(message["MessageAttributes"]["dead_letter"]["StringValue"])
    assert reason["error_type"] == "ValueError" and "a bug in this message" in reason["error"]
    assert reason["failures"] == 2 and reason["receive_count"] >= 2 and reason["queue"] == queue and reason["replica"]
    assert message["MessageAttributes"]["saga_id"]["StringValue"] == str(saga_id)  # its routing attributes kept
