"""Rolling deploys: a consumer handles its own schema version and the previous one (upcast),
and dead-letters any other, with real messages through the relay, SQS and the consumer."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select

from contracts import messages as c
from contracts.messages import Command
from messaging.bus import MessageBus
from messaging.consumer import Consumer
from messaging.envelope import SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, Envelope, MessageRegistry
from messaging.relay import Relay
from tests.integration.conftest import effects
from tests.integration.test_messaging import receive_all, stage

pytestmark = pytest.mark.integration


class ReleaseInventory(Command):
    """ReleaseInventory as a later release might define it: version 2 adds a required ``reason``."""

    order_id: uuid.UUID
    reason: str


def reason_added(payload: dict) -> dict:
    """The upcaster the later release registers for ("ReleaseInventory", 1)."""
    return {**payload, "reason": "not given (version 1)"}


NEXT_RELEASE = MessageRegistry(
    ReleaseInventory, schema_version=SCHEMA_VERSION + 1, upcasters={("ReleaseInventory", SCHEMA_VERSION): reason_added}
)


def body(version: int, payload: dict) -> str:
    envelope = Envelope.wrap(c.ReleaseInventory(order_id=uuid.uuid4()), sender="test", saga_id=uuid.uuid4())
    return envelope.model_copy(update={"schema_version": version, "payload": payload}).model_dump_json()


async def record(uow, envelope, message) -> None:
    await uow.session.execute(effects.insert().values(message_id=envelope.message_id, note=getattr(message, "reason", "v1")))


async def notes(sessions, message_ids) -> dict[uuid.UUID, str]:
    async with sessions() as session:
        rows = await session.execute(
            select(effects.c.message_id, effects.c.note).where(effects.c.message_id.in_(message_ids), effects.c.note != "staged")
        )
        return dict(rows.all())


async def drain(consumer: Consumer, polls: int = 6) -> None:
    for _ in range(polls):  # the queue's maxReceiveCount is 3: rejected messages move to the DLQ
        await consumer.poll_once()


def test_this_release_reads_its_own_version_and_the_previous_one():
    assert SUPPORTED_SCHEMA_VERSIONS == {v for v in (SCHEMA_VERSION - 1, SCHEMA_VERSION) if v >= 1}
    assert NEXT_RELEASE.supported_versions == {SCHEMA_VERSION, SCHEMA_VERSION + 1}


async def test_the_next_release_handles_this_releases_messages_upcast_and_dead_letters_unknown_versions(sessions, broker, queue):
    [old] = await stage(sessions, queue)  # written by this release, through the outbox and the relay
    await Relay(sessions, broker, service="relay").publish_pending()
    url = await broker.queue_url(queue)
    current = body(SCHEMA_VERSION + 1, {"order_id": str(uuid.uuid4()), "reason": "customer cancelled"})
    too_new = body(SCHEMA_VERSION + 2, {"order_id": str(uuid.uuid4()), "reason": "from the future"})
    too_old = body(SCHEMA_VERSION - 1, {"order_id": str(uuid.uuid4())}) if SCHEMA_VERSION > 1 else None
    for message in (current, too_new, too_old):
        if message:
            await broker.sqs.send_message(QueueUrl=url, MessageBody=message)

    bus = MessageBus(
        consumer=f"next-{uuid.uuid4().hex[:6]}",
        sender="test",
        sessions=sessions,
        handlers={ReleaseInventory: record},
        registry=NEXT_RELEASE,
    )
    await drain(Consumer(broker, queue, bus.handle, service="test", wait_time_seconds=1))

    current_id = uuid.UUID(json.loads(current)["message_id"])
    assert await notes(sessions, [old.message_id, current_id]) == {
        old.message_id: "not given (version 1)",
        current_id: "customer cancelled",
    }
    dead = sorted(m["Body"] for m in await receive_all(broker, f"{queue}-dlq"))
    assert dead == sorted(m for m in (too_new, too_old) if m)


async def test_this_release_dead_letters_a_version_it_does_not_know_and_goes_on(sessions, broker, queue):
    url = await broker.queue_url(queue)
    future = body(SCHEMA_VERSION + 1, {"order_id": str(uuid.uuid4())})
    await broker.sqs.send_message(QueueUrl=url, MessageBody=future)
    [good] = await stage(sessions, queue)
    await Relay(sessions, broker, service="relay").publish_pending()

    bus = MessageBus(
        consumer=f"this-{uuid.uuid4().hex[:6]}", sender="test", sessions=sessions, handlers={c.ReleaseInventory: record}
    )
    await drain(Consumer(broker, queue, bus.handle, service="test", wait_time_seconds=1))

    assert await notes(sessions, [good.message_id]) == {good.message_id: "v1"}
    assert [m["Body"] for m in await receive_all(broker, f"{queue}-dlq")] == [future]
