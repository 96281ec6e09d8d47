"""How many messages wait in a queue, not yet taken by any consumer."""

from __future__ import annotations

import asyncio
import time

import structlog

from .aws import Broker

log = structlog.get_logger("backlog")


class QueueBacklog:
    """SQS's ``ApproximateNumberOfMessages`` of a queue (visible messages: not received yet, or
    handed back), read at most once per ``ttl`` seconds per queue however many ask.

    It tells a sender whether a message it sent a while ago and got no answer to is probably
    still waiting its turn (the queue is backed up) rather than lost. It is a hint, never a
    verdict: a queue that cannot be read counts as empty, which means "do as if silent"."""

    def __init__(self, broker: Broker, ttl: float = 1.0) -> None:
        self._broker = broker
        self._ttl = ttl
        self._seen: dict[str, tuple[float, int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def waiting(self, queue: str) -> int:
        """Messages waiting in the logical ``queue`` (0 when unknown)."""
        async with self._locks.setdefault(queue, asyncio.Lock()):
            seen = self._seen.get(queue)
            if seen is not None and time.monotonic() - seen[0] < self._ttl:
                return seen[1]
            try:
                url = await self._broker.queue_url(queue)
                response = await self._broker.sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                )
                count = int(response["Attributes"]["ApproximateNumberOfMessages"])
            except Exception:  # noqa: BLE001 - unknown counts as empty: the sender acts as before
                log.warning("queue_backlog_unreadable", queue=queue, exc_info=True)
                count = 0
            self._seen[queue] = (time.monotonic(), count)
            return count
