"""How many messages wait in a queue, not yet taken by any consumer."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from .aws import Broker

log = structlog.get_logger("backlog")


class QueueBacklog:
    """SQS's ``ApproximateNumberOfMessages`` of a queue (visible messages: not received yet, or
    handed back), read at most once per ``ttl`` seconds per queue however many ask.

    It tells a sender whether a message it sent a while ago and got no answer to is probably
    still waiting its turn (the queue is backed up) rather than lost. It is a hint, never a
    verdict: a queue that cannot be read counts as empty, which means "do as if silent".

    Asking waits for AWS at most ``wait`` seconds: the one who asks is a handler inside a
    database transaction, and a call to SQS (which botocore retries, for minutes when SQS is
    slow) would hold its pooled connection all that time. So ``waiting`` answers at once with a
    count younger than ``stale_after`` (reading it again in the background once older than
    ``ttl``); with none, it waits for the read up to ``wait`` and otherwise answers 0, unknown,
    while the read goes on for the next one who asks."""

    def __init__(self, broker: Broker, ttl: float = 1.0, stale_after: float = 30.0, wait: float = 0.5) -> None:
        self._broker = broker
        self._ttl = ttl
        self._stale_after = stale_after
        self._wait = wait
        self._seen: dict[str, tuple[float, int]] = {}
        self._reading: dict[str, asyncio.Task[None]] = {}

    async def waiting(self, queue: str) -> int:
        """Messages waiting in the logical ``queue`` as last read (0 when unknown); never blocks."""
        seen = self._seen.get(queue)
        age = time.monotonic() - seen[0] if seen is not None else None
        if (age is None or age >= self._ttl) and queue not in self._reading:
            self._reading[queue] = asyncio.create_task(self._read(queue))
        if seen is not None and age is not None and age < self._stale_after:
            return seen[1]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reading[queue]), self._wait)
        seen = self._seen.get(queue)
        fresh = seen is not None and time.monotonic() - seen[0] < self._stale_after
        return seen[1] if seen is not None and fresh else 0

    async def _read(self, queue: str) -> None:
        try:
            url = await self._broker.queue_url(queue)
            response = await self._broker.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            count = int(response["Attributes"]["ApproximateNumberOfMessages"])
        except Exception:  # noqa: BLE001 - unknown counts as empty: the sender acts as before
            log.warning("queue_backlog_unreadable", queue=queue, exc_info=True)
            count = 0
        finally:
            self._reading.pop(queue, None)
        self._seen[queue] = (time.monotonic(), count)
