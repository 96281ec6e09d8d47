"""The consumer loop: long-polls one SQS queue and hands each message to a handler."""
from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import structlog
from pydantic import ValidationError

from . import metrics
from .aws import Broker
from .envelope import MalformedMessage
from .topology import MAX_RECEIVE_COUNT

log = structlog.get_logger("consumer")

Handle = Callable[[str, int], Awaitable[None]]
"""Called with the message body and its receive count; returns once the effect is committed."""


def retry_delay(receive_count: int, *, base: float = 1.0, cap: float = 300.0) -> int:
    """Exponential backoff with full jitter, in whole seconds as SQS visibility wants."""
    return int(random.uniform(0, min(cap, base * 2 ** max(receive_count - 1, 0)))) + 1


def _ids(message: dict) -> dict[str, str]:
    """Saga and message ids for the log, from the routing attributes (no body parsing)."""
    attributes = message.get("MessageAttributes", {})
    return {key: attributes[key]["StringValue"] for key in ("saga_id", "message_type") if key in attributes}


def _describe(error: Exception) -> str:
    """An error for the log without the values it was raised on (they may be personal data)."""
    if isinstance(error, ValidationError):
        return f"ValidationError: {error.errors(include_input=False, include_url=False)}"[:500]
    return f"{type(error).__name__}: {error}"[:500]


class Consumer:
    """Receives from ``queue`` and deletes a message only after ``handle`` returned.

    A crash at any point loses nothing: before the handler's commit the message simply
    becomes visible again; after the commit but before the delete it is redelivered and the
    inbox drops it. A malformed message is made visible again at once, so it reaches the
    queue's dead-letter queue after ``maxReceiveCount`` receives without holding up the
    messages behind it; a failing handler is retried with exponential backoff the same way.
    """

    def __init__(
        self,
        broker: Broker,
        queue: str,
        handle: Handle,
        *,
        service: str,
        wait_time_seconds: int = 20,
        max_messages: int = 10,
        visibility_timeout: int = 10,
    ) -> None:
        self._broker = broker
        self._queue = queue
        self._handle = handle
        self._service = service
        self._wait = wait_time_seconds
        self._max = max_messages
        # Short on purpose: a message taken by a process that then died reappears after
        # this long. A handler that runs longer only risks a concurrent second delivery,
        # which the inbox's primary key turns into a no-op.
        self._visibility = visibility_timeout

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker is unreachable: back off and try again
                log.exception("consumer_poll_failed", queue=self._queue, service=self._service)
                await asyncio.sleep(1)

    async def poll_once(self) -> int:
        url = await self._broker.queue_url(self._queue)
        response = await self._broker.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=self._max,
            WaitTimeSeconds=self._wait,
            VisibilityTimeout=self._visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        # A batch is handled concurrently: messages of different sagas are independent, and
        # those of one saga are serialised by the row locks their handlers take.
        done = await asyncio.gather(*(self._process(url, m) for m in messages))
        handled = [m for m, ok in zip(messages, done, strict=True) if ok]
        if handled:
            await self._delete(url, handled)
        return len(messages)

    async def _process(self, url: str, message: dict) -> bool:
        """Handle one message; True when it may be deleted."""
        receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        context = {"queue": self._queue, "sqs_message_id": message["MessageId"], "receive_count": receive_count,
                   **_ids(message)}
        try:
            await self._handle(message["Body"], receive_count)
        except MalformedMessage as error:
            log.error("message_malformed", error=str(error)[:500], **context)
            if receive_count >= MAX_RECEIVE_COUNT:  # this was its last receive: SQS moves it next
                metrics.dead_lettered(self._service, self._queue)
            await self._release(url, message, 0)
        except Exception as error:  # noqa: BLE001 - transient: retry later, the DLQ catches what never succeeds
            delay = retry_delay(receive_count)
            log.warning("message_handler_failed", retry_in=delay, error=_describe(error), **context)
            await self._release(url, message, delay)
        else:
            return True
        return False

    async def _delete(self, url: str, messages: list[dict]) -> None:
        """Delete after the commits. A delete that fails only means a redelivery the inbox drops."""
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        response = await self._broker.sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        if response.get("Failed"):
            log.warning("delete_failed", queue=self._queue, count=len(response["Failed"]))

    async def _release(self, url: str, message: dict, delay: int) -> None:
        try:
            await self._broker.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=delay
            )
        except Exception:  # noqa: BLE001 - it becomes visible again when its timeout runs out anyway
            log.warning("visibility_change_failed", queue=self._queue, exc_info=True)
