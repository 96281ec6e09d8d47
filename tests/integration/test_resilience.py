"""The consumer and the relay under shutdowns, slow handlers, dead endpoints and lost connections."""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import urlparse

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker

from contracts import messages as c
from messaging import database
from messaging.aws import open_broker
from messaging.bus import MessageBus
from messaging.consumer import Consumer
from messaging.database import asyncpg_dsn
from messaging.relay import Relay
from stack.faults import BLACK_HOLE, FaultyEndpoint
from tests.integration.test_messaging import effect_count, outbox_rows, receive_all, record_effect, stage

pytestmark = pytest.mark.integration


def slow_bus(sessions, seconds: float, started: list | None = None) -> MessageBus:
    async def slow(uow, envelope, message):
        if started is not None:
            started.append(envelope.message_id)
        await asyncio.sleep(seconds)
        await record_effect(uow, envelope, message)

    return MessageBus(
        consumer=f"slow-{time.monotonic_ns()}", sender="test", sessions=sessions, handlers={c.ReleaseInventory: slow}
    )


async def test_a_handler_longer_than_the_visibility_timeout_keeps_its_message_hidden(sessions, broker, queue):
    [envelope] = await stage(sessions, queue)
    await Relay(sessions, broker, service="relay").publish_pending()
    consumer = Consumer(broker, queue, slow_bus(sessions, 5).handle, service="test", wait_time_seconds=1, visibility_timeout=2)
    polling = asyncio.create_task(consumer.poll_once())
    await asyncio.sleep(3)  # past the first visibility timeout, the handler still running
    assert await receive_all(broker, queue, wait=0) == []  # nobody else got it meanwhile
    assert await polling == 1
    assert await effect_count(sessions, envelope.message_id) == 1


async def test_on_stop_the_handler_in_flight_finishes_and_nothing_waits_out_a_timeout(sessions, broker, queue):
    [first] = await stage(sessions, queue)
    await Relay(sessions, broker, service="relay").publish_pending()
    started: list = []
    consumer = Consumer(
        broker,
        queue,
        slow_bus(sessions, 2, started).handle,
        service="test",
        wait_time_seconds=1,
        max_messages=1,
        visibility_timeout=30,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    async with asyncio.timeout(10):
        while not started:
            await asyncio.sleep(0.05)
    [second] = await stage(sessions, queue)  # arrives while the consumer is shutting down
    await Relay(sessions, broker, service="relay").publish_pending()
    stop.set()
    await asyncio.wait_for(running, 10)
    assert await effect_count(sessions, first.message_id) == 1  # finished, not cancelled
    # The second was either never received or handed back at once, not hidden for 30 s.
    leftover = await receive_all(broker, queue, wait=1)
    assert [m["Body"] for m in leftover] == [second.model_dump_json()] or await effect_count(sessions, second.message_id) == 1


async def test_a_black_holed_topic_holds_up_no_queue(sessions, broker, queue, emulator):
    target = urlparse(emulator)
    hole = FaultyEndpoint(target.hostname, target.port, mode=BLACK_HOLE)
    try:
        import os

        saved = os.environ.get("AWS_ENDPOINT_URL_SNS")
        os.environ["AWS_ENDPOINT_URL_SNS"] = hole.url
        try:
            async with open_broker(broker.naming) as black_holed:
                async with sessions() as session, session.begin():
                    # A push first, as SendConfirmation stages it, then the reply.
                    await session.execute(
                        text(
                            "INSERT INTO outbox (message_id, destination, message_type, body, attributes) "
                            "VALUES (gen_random_uuid(), 'topic:customer-push', 'CustomerPushed', '{}', '{}')"
                        )
                    )
                [reply] = await stage(sessions, queue)
                relay = Relay(sessions, black_holed, service="black-holed", poll_interval=0.2, publish_timeout=2)
                stop = asyncio.Event()
                running = asyncio.create_task(relay.run(stop))
                started = time.monotonic()
                try:
                    async with asyncio.timeout(10):
                        while await outbox_rows(sessions, [reply], published=True) == 0:
                            await asyncio.sleep(0.05)
                    assert time.monotonic() - started < 1.5  # not after the topic's timeout
                finally:
                    stop.set()
                    await asyncio.wait_for(running, 10)
        finally:
            if saved is None:
                os.environ.pop("AWS_ENDPOINT_URL_SNS", None)
            else:
                os.environ["AWS_ENDPOINT_URL_SNS"] = saved
    finally:
        hole.close()
    assert len(await receive_all(broker, queue)) == 1


async def test_after_the_server_dropped_every_connection_the_next_commit_is_published_at_once(
    sessions, broker, queue, database_url
):
    own = database.engine(database_url, pool_size=1, max_overflow=3)  # a pool of its own, as in a service
    relay = Relay(async_sessionmaker(own), broker, service="dropped", poll_interval=60)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        [first] = await stage(sessions, queue)
        async with asyncio.timeout(10):
            while await outbox_rows(sessions, [first], published=True) == 0:
                await asyncio.sleep(0.05)
        killer = await asyncpg.connect(asyncpg_dsn(database_url))
        try:  # as a server restart or a failover would: every other connection to this database goes
            await killer.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await killer.close()
        try:
            [envelope] = await stage(sessions, queue)
        except DBAPIError as error:  # this test's writer has no ping: its first statement finds out
            assert error.connection_invalidated
            [envelope] = await stage(sessions, queue)
        # The relay's connection is dead too: it finds out, and tries again on a fresh one.
        async with asyncio.timeout(5):  # long before the 60 s poll
            while await outbox_rows(sessions, [envelope], published=True) == 0:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        await own.dispose()
    assert len(await receive_all(broker, queue)) == 2


async def test_a_destination_that_failed_is_retried_when_its_backoff_ends_not_at_the_next_poll(sessions, broker, naming):
    name = f"late{uuid.uuid4().hex[:8]}"  # a queue that does not exist yet: the first publish fails
    relay = Relay(sessions, broker, service="backoff", poll_interval=60)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await asyncio.sleep(0.5)
        [envelope] = await stage(sessions, name)
        async with asyncio.timeout(10):
            while await outbox_attempts(sessions, envelope) == 0:
                await asyncio.sleep(0.05)
        await broker.sqs.create_queue(QueueName=naming.physical(name))
        async with asyncio.timeout(10):  # the backoff is 0.5 s to 1 s; the poll would be 60 s away
            while await outbox_rows(sessions, [envelope], published=True) == 0:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
    assert len(await receive_all(broker, name)) == 1


async def outbox_attempts(sessions, envelope) -> int:
    async with sessions() as session:
        query = text("SELECT attempts FROM outbox WHERE message_id = :id")
        return (await session.execute(query, {"id": envelope.message_id})).scalar_one()
