"""A queue's backlog hint is read in the background: asking never waits for SQS."""

from __future__ import annotations

import asyncio

from messaging.backlog import QueueBacklog


class SlowSqs:
    """SQS whose GetQueueAttributes answers only when the test lets it."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.calls = 0
        self.count = 7

    async def get_queue_attributes(self, **_: object) -> dict[str, dict[str, str]]:
        self.calls += 1
        await self.answer.wait()
        return {"Attributes": {"ApproximateNumberOfMessages": str(self.count)}}


class Broker:
    def __init__(self) -> None:
        self.sqs = SlowSqs()

    async def queue_url(self, queue: str) -> str:
        return f"https://sqs.local/{queue}"


def test_asking_answers_at_once_and_the_count_read_meanwhile_is_the_next_answer():
    async def scenario() -> None:
        broker = Broker()
        backlog = QueueBacklog(broker, ttl=0.05, wait=0.02)  # type: ignore[arg-type]
        # SQS does not answer: the one who asks (a handler in a transaction) is held `wait` at most.
        assert await asyncio.wait_for(backlog.waiting("payment"), 0.1) == 0
        assert await asyncio.wait_for(backlog.waiting("payment"), 0.1) == 0
        assert broker.sqs.calls == 1, "one read in flight per queue, however many ask"
        broker.sqs.answer.set()
        await asyncio.sleep(0.01)
        assert await backlog.waiting("payment") == 7
        broker.sqs.count = 3
        await asyncio.sleep(0.06)  # older than ttl: still answered from what is known, read again behind
        assert await backlog.waiting("payment") == 7
        await asyncio.sleep(0.01)
        assert await backlog.waiting("payment") == 3

    asyncio.run(scenario())


def test_a_count_older_than_stale_after_is_unknown():
    async def scenario() -> None:
        broker = Broker()
        broker.sqs.answer.set()
        backlog = QueueBacklog(broker, ttl=0.01, stale_after=0.02, wait=0.01)  # type: ignore[arg-type]
        await backlog.waiting("inventory")
        await asyncio.sleep(0.005)
        assert await backlog.waiting("inventory") == 7
        broker.sqs.answer.clear()  # SQS hangs from now on
        await asyncio.sleep(0.03)
        assert await backlog.waiting("inventory") == 0

    asyncio.run(scenario())


def test_the_first_ask_waits_for_a_read_that_answers_quickly():
    async def scenario() -> None:
        broker = Broker()
        broker.sqs.answer.set()
        assert await QueueBacklog(broker, wait=1.0).waiting("payment") == 7  # type: ignore[arg-type]

    asyncio.run(scenario())
