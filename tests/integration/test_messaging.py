"""Outbox, relay, inbox and consumer on real PostgreSQL and the emulator, including crashes."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select, text

from contracts import messages as c
from messaging.bus import MessageBus
from messaging.consumer import Consumer
from messaging.envelope import Envelope
from messaging.relay import Relay
from messaging.uow import UnitOfWork
from tests.integration.conftest import effects

pytestmark = pytest.mark.integration


def command() -> c.ReleaseInventory:
    return c.ReleaseInventory(order_id=uuid.uuid4())


async def record_effect(uow: UnitOfWork, envelope: Envelope, message) -> None:
    await uow.session.execute(effects.insert().values(message_id=envelope.message_id, note="handled"))


def bus(sessions) -> MessageBus:
    return MessageBus(
        consumer=f"test-{uuid.uuid4().hex[:6]}", sender="test", sessions=sessions, handlers={c.ReleaseInventory: record_effect}
    )


async def stage(sessions, to: str, count: int = 1, commit: bool = True) -> list[Envelope]:
    async with UnitOfWork(sessions, "test") as uow:
        sent = [await uow.send(command(), f"queue:{to}", saga_id=uuid.uuid4()) for _ in range(count)]
        await uow.session.execute(effects.insert(), [{"message_id": e.message_id, "note": "staged"} for e in sent])
        if commit:
            await uow.commit()
    return sent


async def outbox_rows(sessions, envelopes, published: bool | None = None) -> int:
    query = text(
        "SELECT count(*) FROM outbox WHERE message_id = ANY(:ids)"
        + ("" if published is None else f" AND published_at IS {'NOT ' if published else ''}NULL")
    )
    async with sessions() as session:
        return (await session.execute(query, {"ids": [e.message_id for e in envelopes]})).scalar_one()


async def effect_count(sessions, message_id, note="handled") -> int:
    async with sessions() as session:
        return (
            await session.execute(
                select(func.count()).select_from(effects).where(effects.c.message_id == message_id, effects.c.note == note)
            )
        ).scalar_one()


async def receive_all(broker, queue, wait=1) -> list[dict]:
    url = await broker.queue_url(queue)
    received = []
    while True:
        response = await broker.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
        if not response.get("Messages"):
            return received
        for message in response["Messages"]:
            received.append(message)
            await broker.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


async def test_outbox_row_exists_only_if_the_state_change_committed(sessions, queue):
    rolled_back = await stage(sessions, queue, commit=False)
    committed = await stage(sessions, queue)
    assert await outbox_rows(sessions, rolled_back) == 0
    assert await effect_count(sessions, rolled_back[0].message_id, "staged") == 0
    assert await outbox_rows(sessions, committed) == 1
    assert await effect_count(sessions, committed[0].message_id, "staged") == 1


async def test_two_relays_side_by_side_publish_every_row_exactly_once(sessions, broker, queue):
    staged = await stage(sessions, queue, count=120)
    relays = [Relay(sessions, broker, service=f"relay-{i}", batch_size=15) for i in range(2)]

    async def drain(relay):
        total = 0
        while published := await relay.publish_pending():
            total += published
        return total

    counts = await asyncio.gather(*(drain(r) for r in relays))
    # Other tests' rows may be in the outbox too; ours must all be published, once.
    assert await outbox_rows(sessions, staged, published=False) == 0
    received = [Envelope.model_validate_json(m["Body"]).message_id for m in await receive_all(broker, queue)]
    assert sorted(received) == sorted(e.message_id for e in staged)
    assert sum(counts) >= 120 and all(counts)


async def test_relay_crash_after_publish_before_mark_republishes_and_the_inbox_drops_the_copy(sessions, broker, queue):
    [envelope] = await stage(sessions, queue)

    class CrashAfterPublish(Relay):
        async def _publish(self, destination, rows):
            await super()._publish(destination, rows)
            raise RuntimeError("process killed after the broker acknowledged")

    with pytest.raises(RuntimeError):
        await CrashAfterPublish(sessions, broker, service="crashing").publish_pending()
    assert await outbox_rows(sessions, [envelope], published=False) == 1
    await Relay(sessions, broker, service="restarted").publish_pending()
    assert await outbox_rows(sessions, [envelope], published=True) == 1

    messages = [
        m for m in await receive_all(broker, queue) if Envelope.model_validate_json(m["Body"]).message_id == envelope.message_id
    ]
    assert len(messages) == 2  # at least once: the copy really was delivered
    handler = bus(sessions)
    for message in messages:
        await handler.handle(message["Body"])
    assert await effect_count(sessions, envelope.message_id) == 1


async def test_consumer_crash_between_commit_and_delete_loses_nothing_and_repeats_nothing(sessions, broker, queue):
    [envelope] = await stage(sessions, queue)
    await Relay(sessions, broker, service="relay").publish_pending()
    url = await broker.queue_url(queue)
    handler = bus(sessions)

    first = (await broker.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2))["Messages"][0]
    await handler.handle(first["Body"])  # committed ... and the process dies before DeleteMessage
    await broker.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)

    consumer = Consumer(broker, queue, handler.handle, service="test", wait_time_seconds=2)
    assert await consumer.poll_once() == 1  # redelivered, recognised, deleted
    assert await effect_count(sessions, envelope.message_id) == 1
    assert await receive_all(broker, queue) == []


async def test_concurrent_duplicate_deliveries_have_one_effect(sessions):
    envelope = Envelope.wrap(command(), sender="test", saga_id=uuid.uuid4())
    handler = bus(sessions)
    await asyncio.gather(*(handler.handle(envelope.model_dump_json()) for _ in range(5)), return_exceptions=True)
    await handler.handle(envelope.model_dump_json())
    assert await effect_count(sessions, envelope.message_id) == 1


async def test_malformed_messages_reach_the_dead_letter_queue_without_blocking_the_rest(sessions, broker, queue):
    url = await broker.queue_url(queue)
    poison = [
        "not json",
        '{"message_id": "x"}',
        Envelope.wrap(command(), sender="t").model_copy(update={"message_type": "NoSuchType"}).model_dump_json(),
        Envelope.wrap(command(), sender="t").model_copy(update={"payload": {"order_id": "nope"}}).model_dump_json(),
    ]
    for body in poison:
        await broker.sqs.send_message(QueueUrl=url, MessageBody=body)
    [good] = await stage(sessions, queue)
    await Relay(sessions, broker, service="relay").publish_pending()

    consumer = Consumer(broker, queue, bus(sessions).handle, service="test", wait_time_seconds=1)
    for _ in range(12):
        await consumer.poll_once()
    assert await effect_count(sessions, good.message_id) == 1
    dead = await receive_all(broker, f"{queue}-dlq")
    assert sorted(m["Body"] for m in dead) == sorted(poison)


async def test_attributes_of_any_type_do_not_stall_a_batch(sessions, broker, queue):
    """Anyone who can send to the queue chooses the attributes: a Binary or Number attribute
    under a name the consumer reads (the saga id, the trace context) once failed the whole
    receive it came in, every message of the batch with it, again on every redelivery."""
    url = await broker.queue_url(queue)
    odd = Envelope.wrap(command(), sender="t", saga_id=uuid.uuid4())
    await broker.sqs.send_message(
        QueueUrl=url,
        MessageBody=odd.model_dump_json(),
        MessageAttributes={
            "saga_id": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
            "message_type": {"DataType": "Number", "StringValue": "7"},
            "traceparent": {"DataType": "Binary", "BinaryValue": b"\xff"},
        },
    )
    [good] = await stage(sessions, queue)
    await Relay(sessions, broker, service="relay").publish_pending()

    consumer = Consumer(broker, queue, bus(sessions).handle, service="test", wait_time_seconds=1)
    for _ in range(4):
        await consumer.poll_once()
    # Both handled once: the odd attributes are not ours, so they were left out, not fatal.
    assert await effect_count(sessions, good.message_id) == 1
    assert await effect_count(sessions, odd.message_id) == 1
    assert await receive_all(broker, f"{queue}-dlq", wait=0) == []


async def test_relay_wakes_on_a_commit_that_staged_rows_instead_of_waiting_for_its_poll(sessions, broker, queue):
    relay = Relay(sessions, broker, service="woken", poll_interval=60)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await asyncio.sleep(0.5)  # first pass done, now waiting for a commit (or the 60 s poll)
    try:
        [envelope] = await stage(sessions, queue)
        # Staged before a savepoint that is then undone (a refused step): the commit still announces it.
        async with UnitOfWork(sessions, "test") as uow:
            later = await uow.send(command(), f"queue:{queue}", saga_id=uuid.uuid4())
            with pytest.raises(LookupError):
                async with uow.savepoint():
                    await uow.session.execute(text("SELECT 1"))
                    raise LookupError("refused")
            await uow.commit()
        # Staged before a savepoint that completes (an applied step): announced by the commit
        # of the transaction, not by the savepoint's release, when the row is not visible yet.
        async with UnitOfWork(sessions, "test") as uow:
            last = await uow.send(command(), f"queue:{queue}", saga_id=uuid.uuid4())
            async with uow.savepoint():
                await uow.session.execute(text("SELECT 1"))
            await asyncio.sleep(0.5)  # time for a relay woken too early to look, find nothing and go back to sleep
            await uow.commit()
        # A rolled-back transaction announces nothing and publishes nothing.
        [discarded] = await stage(sessions, queue, commit=False)
        async with asyncio.timeout(10):  # long before the 60 s poll
            while await outbox_rows(sessions, [envelope, later, last], published=True) < 3:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert await outbox_rows(sessions, [discarded]) == 0
    assert len(await receive_all(broker, queue)) == 3


async def test_a_transient_handler_failure_is_retried_later_and_then_has_its_effect_once(sessions, broker, queue):
    [envelope] = await stage(sessions, queue)
    await Relay(sessions, broker, service="relay").publish_pending()
    attempts = []

    async def flaky(uow, env, message):
        attempts.append(env.message_id)
        if len(attempts) == 1:
            raise ConnectionError("database briefly unavailable")
        await record_effect(uow, env, message)

    handler = MessageBus(consumer="flaky", sender="test", sessions=sessions, handlers={c.ReleaseInventory: flaky})
    consumer = Consumer(broker, queue, handler.handle, service="test", wait_time_seconds=1)
    await consumer.poll_once()
    assert await effect_count(sessions, envelope.message_id) == 0
    async with asyncio.timeout(15):  # released with a backoff of a second or two, not lost
        while await effect_count(sessions, envelope.message_id) == 0:
            await consumer.poll_once()
    assert len(attempts) == 2
    assert await receive_all(broker, queue) == []


async def test_a_message_failing_inside_a_batch_is_retried_alone_while_the_others_commit_once(sessions, broker, queue):
    """One receive, one transaction: each message in a savepoint of its own, so the one whose
    handler fails is undone alone (its partial effect too) and retried later, and the others
    are committed together, once; a malformed one beside them goes back for the DLQ."""
    staged = await stage(sessions, queue, count=4)
    failing = staged[1].message_id
    await Relay(sessions, broker, service="relay").publish_pending()
    await broker.sqs.send_message(QueueUrl=await broker.queue_url(queue), MessageBody="not json")
    attempts: list[uuid.UUID] = []

    async def effect_then_maybe_fail(uow, env, message):
        attempts.append(env.message_id)
        txid = (await uow.session.execute(text("SELECT txid_current()"))).scalar_one()
        await uow.session.execute(effects.insert().values(message_id=env.message_id, note=f"tx {txid}"))
        if env.message_id == failing and attempts.count(failing) == 1:
            raise ConnectionError("the effect's second statement failed")

    handlers = {c.ReleaseInventory: effect_then_maybe_fail}
    handler = MessageBus(consumer="batch", sender="test", sessions=sessions, handlers=handlers)
    consumer = Consumer(broker, queue, batch=handler.handle_batch, service="test", wait_time_seconds=1)
    first_receive: set[uuid.UUID] = set()
    async with asyncio.timeout(10):  # moto may hand the five out over more than one receive
        while len(set(attempts)) < 4:
            await consumer.poll_once()
            first_receive = first_receive or set(attempts)

    async def notes() -> dict[uuid.UUID, list[str]]:
        async with sessions() as session:
            rows = (await session.execute(select(effects.c.message_id, effects.c.note).where(effects.c.note.like("tx %")))).all()
        found: dict[uuid.UUID, list[str]] = {}
        for message_id, note in rows:
            found.setdefault(message_id, []).append(note)
        return {m: n for m, n in found.items() if m in {e.message_id for e in staged}}

    others = [e.message_id for e in staged if e.message_id != failing]
    after_first = await notes()
    assert failing not in after_first, "the failed message's partial effect was rolled back"
    assert all(len(after_first[m]) == 1 for m in others)
    together = [m for m in others if m in first_receive]
    assert len(together) >= 2 and len({after_first[m][0] for m in together}) == 1, "one receive, one transaction"

    async with asyncio.timeout(15):  # released with a backoff of a second or two, then handled alone
        while failing not in await notes():
            await consumer.poll_once()
    final = await notes()
    assert all(len(final[m]) == 1 for m in staged_ids(staged)), "every message's effect exactly once"
    assert final[failing][0] not in {final[m][0] for m in others}, "the retry was a transaction of its own"
    assert attempts.count(failing) == 2 and all(attempts.count(m) == 1 for m in others)
    async with sessions() as session:
        claimed = (
            await session.execute(
                text("SELECT count(*) FROM inbox WHERE consumer = 'batch' AND message_id = ANY(:ids)"),
                {"ids": staged_ids(staged)},
            )
        ).scalar_one()
    assert claimed == 4


def staged_ids(staged: list[Envelope]) -> list[uuid.UUID]:
    return [e.message_id for e in staged]


async def test_janitor_purges_only_what_no_redelivery_can_need(sessions):
    from datetime import timedelta

    from messaging import janitor

    old_in, new_in, old_out, unpublished = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO inbox (consumer, message_id, message_type, received_at) VALUES "
                "('janitor-test', :old, 'X', now() - interval '16 days'), ('janitor-test', :new, 'X', now() - interval '14 days')"
            ),
            {"old": old_in, "new": new_in},
        )
        await session.execute(
            text(
                "INSERT INTO outbox (message_id, destination, message_type, body, attributes, created_at, published_at) VALUES "
                "(:old, 'queue:x', 'X', '{}', '{}', now() - interval '9 days', now() - interval '8 days'), "
                "(:unpublished, 'queue:x', 'X', '{}', '{}', now() - interval '30 days', NULL)"
            ),
            {"old": old_out, "unpublished": unpublished},
        )
    with pytest.raises(ValueError):
        await janitor.purge(sessions, outbox_retention=timedelta(days=7), inbox_retention=timedelta(days=1))
    counts = await janitor.purge(sessions, outbox_retention=timedelta(days=7))
    assert counts["outbox"] >= 1 and counts["inbox"] >= 1
    async with sessions() as session:
        inbox = set((await session.execute(text("SELECT message_id FROM inbox WHERE consumer = 'janitor-test'"))).scalars())
        outbox = set(
            (
                await session.execute(
                    text("SELECT message_id FROM outbox WHERE message_id = ANY(:ids)"), {"ids": [old_out, unpublished]}
                )
            ).scalars()
        )
    assert inbox == {new_in}
    assert outbox == {unpublished}  # never delete what has not been published
