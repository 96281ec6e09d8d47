"""The consumer loop: long-polls one SQS queue and hands each message to a handler."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

import structlog
from pydantic import ValidationError

from . import metrics
from .aws import Broker
from .crash import crash_point
from .envelope import MalformedMessage
from .naming import MAX_RECEIVE_COUNT
from .received import Handle, HandleBatch, NotMine, Received, Skipped, one_by_one
from .tracing import TRACE_ATTRIBUTES

log = structlog.get_logger("consumer")


def retry_delay(receive_count: int, *, base: float = 1.0, cap: float = 300.0) -> int:
    """Exponential backoff with full jitter, in whole seconds as SQS visibility wants."""
    return int(random.uniform(0, min(cap, base * 2 ** max(receive_count - 1, 0)))) + 1


def _strings(message: dict[str, Any], keys: tuple[str, ...]) -> dict[str, str]:
    """The message attributes named ``keys`` that are strings. Anyone who can send to the queue
    chooses the attributes: one of another type (Binary, Number) is not ours, and is left out
    rather than allowed to fail the receive it came in."""
    attributes = message.get("MessageAttributes") or {}
    found = {key: attributes[key] for key in keys if isinstance(attributes.get(key), dict)}
    return {
        key: a["StringValue"]
        for key, a in found.items()
        if str(a.get("DataType", "")).split(".")[0] == "String" and isinstance(a.get("StringValue"), str)
    }


def _ids(message: dict[str, Any]) -> dict[str, str]:
    """Saga and message ids for the log, from the routing attributes (no body parsing)."""
    return _strings(message, ("saga_id", "message_type"))


def _trace(message: dict[str, Any]) -> dict[str, str]:
    """The trace context among the message attributes (none when the sender was not tracing)."""
    return _strings(message, TRACE_ATTRIBUTES)


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

    ``batch`` handles all the messages of one receive at once (a
    :meth:`~messaging.bus.MessageBus.handle_batch`, one transaction for them all); ``handle``
    instead takes one message at a time (:func:`~messaging.received.one_by_one`). Up to
    ``max_in_flight`` messages are handled at once: the loop receives the next batch as soon
    as there is room for it rather than after the slowest handler of the last one (messages
    of different sagas are independent; those of one saga are serialised by the row locks
    their handlers take). Handled messages are deleted in batches of ten, after a
    linger (``delete_linger``: a delete only has to beat the visibility timeout), whichever
    receive brought them. Under traffic (a receive brought two or more, but not a full
    batch) the next receive waits ``receive_linger`` so that it takes more at once.

    On a FIFO queue (``fifo``) the messages of one group that a receive brings are handled
    one after the other, in the order they reached the queue, and when one fails the rest of
    its group in that batch are handed back unhandled: SQS hands out none of a group while an
    earlier one is in flight, so a group's messages are handled strictly in order, by whichever
    instance receives them, each only after every earlier one was handled or dead-lettered.

    While handlers run, their messages' visibility is extended, so a long handler never
    lets its message reappear. When ``stop`` is set the consumer receives no more, lets the
    handlers in flight finish, and makes what it received but did not handle visible again
    at once, so another instance takes it without waiting out the visibility timeout.
    """

    def __init__(
        self,
        broker: Broker,
        queue: str,
        handle: Handle | None = None,
        *,
        batch: HandleBatch | None = None,
        service: str,
        wait_time_seconds: int = 20,
        max_messages: int = 10,
        visibility_timeout: int = 10,
        max_in_flight: int = 20,
        delete_linger: float = 0.5,
        receive_linger: float = 0.05,
        fifo: bool = False,
    ) -> None:
        self._broker = broker
        self._queue = queue
        if (handle is None) == (batch is None):
            raise TypeError("a consumer takes a handler of one message (handle) or of a receive (batch)")
        self._handle: HandleBatch = batch if batch is not None else one_by_one(handle)  # type: ignore[arg-type]
        self._service = service
        self._wait = wait_time_seconds
        self._max = max_messages
        # Short on purpose: a message taken by a process that then died reappears after
        # this long. A live handler keeps its message hidden by extending it (``_renew``).
        self._visibility = visibility_timeout
        self._max_in_flight = max(max_in_flight, max_messages)
        # On a FIFO queue a delete is what lets the group's next message out: no linger there.
        self._linger = 0.0 if fifo else delete_linger
        self._receive_linger = receive_linger
        self._last_batch = 0
        """How many the last receive brought: two or more (but not a full batch) means traffic."""
        self._fifo = fifo
        self._in_flight: dict[str, tuple[dict[str, Any], float]] = {}
        """Messages whose handlers run: the message and when it was received (monotonic)."""
        self._room = asyncio.Condition()
        self._deletable: list[dict[str, Any]] = []
        self._delete_due = asyncio.Event()
        self._closing = False

    async def run(self, stop: asyncio.Event) -> None:
        """Receive and handle until ``stop`` is set; returns once nothing is in flight."""
        url = ""
        handlers: set[asyncio.Task[None]] = set()
        renewing = asyncio.create_task(self._renew_loop(lambda: url))
        deleting = asyncio.create_task(self._delete_loop(lambda: url))
        try:
            while not stop.is_set():
                if not await self._wait_for_room():
                    continue
                if 2 <= self._last_batch < self._max:
                    # Busy but not backed up: a moment's wait lets the next receive take more
                    # than one, fewer requests per message. Idle or light traffic (a message
                    # at a time) and a backlog (full batches) are received without it.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._receive_linger)
                try:
                    url = await self._broker.queue_url(self._queue)
                    messages = await self._receive(url)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the broker is unreachable: back off and try again
                    log.exception("consumer_poll_failed", queue=self._queue, service=self._service)
                    await asyncio.sleep(1)
                    continue
                if stop.is_set() and messages:
                    await self._hand_back(url, messages)
                    break
                for message in messages:
                    self._in_flight[message["MessageId"]] = (message, time.monotonic())
                if messages:
                    task = asyncio.create_task(self._run_batch(url, messages))
                    handlers.add(task)
                    task.add_done_callback(handlers.discard)
            if handlers:
                await asyncio.gather(*handlers, return_exceptions=True)
        finally:
            renewing.cancel()
            self._closing = True
            self._delete_due.set()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await deleting

    async def _hand_back(self, url: str, messages: list[dict[str, Any]]) -> None:
        """Received while shutting down: made visible again at once rather than handled."""
        await asyncio.gather(*(self._release(url, m, 0) for m in messages))

    async def _wait_for_room(self) -> bool:
        """Whether a whole batch fits among the handlers in flight (re-asked twice a second)."""
        if self._has_room():
            return True
        async with self._room:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait_for(self._has_room), 0.5)
            return self._has_room()

    def _has_room(self) -> bool:
        return len(self._in_flight) <= self._max_in_flight - self._max

    async def poll_once(self, stop: asyncio.Event | None = None) -> int:
        """Receive one batch, handle it and delete what was handled; returns how many came."""
        url = await self._broker.queue_url(self._queue)
        messages = await self._receive(url)
        if stop is not None and stop.is_set() and messages:
            await self._hand_back(url, messages)
            return 0
        for message in messages:
            self._in_flight[message["MessageId"]] = (message, time.monotonic())
        renewing = asyncio.create_task(self._renew_loop(lambda: url))
        try:
            handled = {m["MessageId"] for m in await self._process_batch(url, messages)} if messages else set()
            done = [m["MessageId"] in handled for m in messages]
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            for message in messages:
                self._in_flight.pop(message["MessageId"], None)
        for batch in _batches([m for m, ok in zip(messages, done, strict=True) if ok]):
            await self._delete(url, batch)
        return len(messages)

    async def _receive(self, url: str) -> list[dict[str, Any]]:
        response = await self._broker.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=self._max,
            WaitTimeSeconds=self._wait,
            VisibilityTimeout=self._visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId", "SenderId"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        self._last_batch = len(messages)
        return messages

    async def _process_batch(self, url: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Hand one receive's messages to the handler at once; returns those handled. The rest
        are made visible again: at once when malformed (so that the queue's redrive moves it
        to the dead-letter queue after its last receive) or skipped behind a failed message of
        its group, after a backoff when its handler failed."""
        received = [
            Received(
                m["Body"],
                int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                (m.get("Attributes", {}).get("MessageGroupId") or m["MessageId"]) if self._fifo else None,
                _trace(m),
                self._queue,
                m.get("Attributes", {}).get("SenderId"),
            )
            for m in messages
        ]
        try:
            outcomes = await self._handle(received)
            crash_point("consumer_before_delete")
        except Exception as error:  # noqa: BLE001 - e.g. the database unreachable: all of them are retried
            outcomes = [error] * len(messages)
        handled: list[dict[str, Any]] = []
        releases = []
        for message, item, outcome in zip(messages, received, outcomes, strict=True):
            if outcome is None:
                handled.append(message)
                continue
            context = {
                "queue": self._queue,
                "sqs_message_id": message["MessageId"],
                "receive_count": item.receive_count,
                **_ids(message),
            }
            if isinstance(outcome, Skipped):
                releases.append(self._release(url, message, 0))
            elif isinstance(outcome, NotMine):
                log.info("message_left_for_another", reason=str(outcome)[:300], **context)
                metrics.MESSAGES_LEFT.labels(self._service, self._queue).inc()
                releases.append(self._release(url, message, 0))
            elif isinstance(outcome, MalformedMessage):
                log.error("message_malformed", error=str(outcome)[:500], **context)
                if item.receive_count >= MAX_RECEIVE_COUNT:  # this was its last receive: SQS moves it next
                    metrics.dead_lettered(self._service, self._queue)
                releases.append(self._release(url, message, 0))
            else:  # transient: retried later, the DLQ catches what never succeeds
                delay = retry_delay(item.receive_count)
                log.warning("message_handler_failed", retry_in=delay, error=_describe(outcome), **context)
                releases.append(self._release(url, message, delay))
        await asyncio.gather(*releases)
        return handled

    async def _run_batch(self, url: str, messages: list[dict[str, Any]]) -> None:
        try:
            handled = await self._process_batch(url, messages)
            if handled:
                self._deletable.extend(handled)
                self._delete_due.set()
        finally:
            for message in messages:
                self._in_flight.pop(message["MessageId"], None)
            async with self._room:
                self._room.notify_all()

    async def _renew_loop(self, url: Callable[[], str]) -> None:
        """Keep the messages in flight hidden while their handlers run, renewing well before expiry."""
        period = self._visibility / 3
        while True:
            await asyncio.sleep(period)
            due = [m for m, since in self._in_flight.values() if time.monotonic() - since >= period]
            for batch in _batches(due):
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self._visibility}
                    for i, m in enumerate(batch)
                ]
                try:
                    await self._broker.sqs.change_message_visibility_batch(QueueUrl=url(), Entries=entries)
                except Exception:  # noqa: BLE001 - at worst the message is delivered twice; the inbox drops one
                    log.warning("visibility_extension_failed", queue=self._queue, exc_info=True)

    async def _delete_loop(self, url: Callable[[], str]) -> None:
        """Delete handled messages ten at a time: a short linger lets a partial batch fill."""
        while True:
            await self._delete_due.wait()
            if len(self._deletable) < 10 and not self._closing:
                await asyncio.sleep(self._linger)
            self._delete_due.clear()
            while self._deletable:
                deletable, self._deletable = self._deletable, []
                for batch in _batches(deletable):
                    try:
                        await self._delete(url(), batch)
                    except Exception:  # noqa: BLE001 - redelivered later and dropped by the inbox
                        log.warning("delete_failed", queue=self._queue, count=len(batch), exc_info=True)
            if self._closing:
                return

    async def _delete(self, url: str, messages: list[dict[str, Any]]) -> None:
        """Delete after the commits. A delete that fails only means a redelivery the inbox drops."""
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        response = await self._broker.sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        if response.get("Failed"):
            log.warning("delete_failed", queue=self._queue, count=len(response["Failed"]))

    async def _release(self, url: str, message: dict[str, Any], delay: int) -> None:
        try:
            await self._broker.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=delay
            )
        except Exception:  # noqa: BLE001 - it becomes visible again when its timeout runs out anyway
            log.warning("visibility_change_failed", queue=self._queue, exc_info=True)


def _batches(items: list[dict[str, Any]], size: int = 10) -> list[list[dict[str, Any]]]:
    """``items`` in slices of ``size``: SQS's batch calls take ten entries at most."""
    return [items[start : start + size] for start in range(0, len(items), size)]
