"""The consumer loop: long-polls one SQS queue and hands each message to a handler."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError

from . import database, metrics
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


NOT_MINE_DELAY = 2
"""Seconds a message another release must handle waits before it is handed out again: time for
a process of that release to take it, rather than this one bouncing it at once, receive after
receive, towards the dead-letter queue."""
DEAD_LETTER_ATTRIBUTE = "dead_letter"
"""The message attribute, a JSON object, that says why a consumer dead-lettered a message."""
REMEMBERED_FAILURES = 10_000
"""Failing messages whose failures one consumer counts at once (the oldest are forgotten)."""


def replica() -> str:
    """This process, as a dead letter's reason names it: host (an ECS task's) and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


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

    A message whose own handler failed ``dead_letter_after`` times (a malformed one at once) is
    sent to the queue's dead-letter queue by the consumer, with why in its ``dead_letter``
    attribute (error type and message, receive count, failures, replica, time), and deleted:
    on a FIFO queue the messages behind it in its group go on at once, handled, instead of
    being received with it until SQS's ``maxReceiveCount`` dead-letters them all untried.
    SQS's own redrive remains the net for what the consumer cannot count (a process that
    dies on the message).

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
        dead_letter_after: int | None = None,
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
        self._dead_letter_after = dead_letter_after
        """After this many failures of its own handler (None: never), a message is moved to the
        dead-letter queue by the consumer, with its reason, and its FIFO group goes on."""
        self._failures: OrderedDict[str, int] = OrderedDict()
        """SQS message id -> how many times its own handler failed here. SQS's receive count
        is no measure of that: on a FIFO queue the followers of a failing message are received
        (and handed back unhandled) as often as it is."""
        self._replica = replica()
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
                self._failures.pop(message["MessageId"], None)
                handled.append(message)
                continue
            context = {
                "queue": self._queue,
                "sqs_message_id": message["MessageId"],
                "receive_count": item.receive_count,
                **_ids(message),
            }
            if isinstance(outcome, Skipped):  # untried: not a failure of its own
                releases.append(self._release(url, message, 0))
            elif isinstance(outcome, NotMine):
                log.info("message_left_for_another", reason=str(outcome)[:300], retry_in=NOT_MINE_DELAY, **context)
                metrics.MESSAGES_LEFT.labels(self._service, self._queue).inc()
                releases.append(self._release(url, message, NOT_MINE_DELAY))
            elif database.unavailable(outcome):  # the database's state, not this message's fault: not counted
                delay = retry_delay(item.receive_count)
                log.warning("message_handler_failed", retry_in=delay, error=_describe(outcome), **context)
                releases.append(self._release(url, message, delay))
            else:
                failures = self._failed(message["MessageId"], malformed=isinstance(outcome, MalformedMessage))
                if isinstance(outcome, MalformedMessage):
                    log.error("message_malformed", error=str(outcome)[:500], failures=failures, **context)
                else:
                    log.warning("message_handler_failed", error=_describe(outcome), failures=failures, **context)
                if self._dead_letter_after is not None and failures >= self._dead_letter_after:
                    releases.append(self._dead_letter(url, message, item, outcome, failures, context))
                elif isinstance(outcome, MalformedMessage):
                    if item.receive_count >= MAX_RECEIVE_COUNT:  # this was its last receive: SQS moves it next
                        metrics.dead_lettered(self._service, self._queue)
                    releases.append(self._release(url, message, 0))
                else:  # transient: retried later, the DLQ catches what never succeeds
                    releases.append(self._release(url, message, retry_delay(failures)))
        await asyncio.gather(*releases)
        return handled

    def _failed(self, message_id: str, *, malformed: bool) -> int:
        """Count a failure of ``message_id``'s own handler; a malformed message counts as all of
        them at once (it will never parse). Returns its failures so far."""
        failures = (self._dead_letter_after or 1) if malformed else self._failures.pop(message_id, 0) + 1
        self._failures[message_id] = failures
        while len(self._failures) > REMEMBERED_FAILURES:
            self._failures.popitem(last=False)
        return failures

    async def _dead_letter(
        self,
        url: str,
        message: dict[str, Any],
        item: Received,
        error: Exception,
        failures: int,
        context: dict[str, Any],
    ) -> None:
        """Move ``message`` to the queue's dead-letter queue with why, then delete it here. If the
        move fails it is released with a backoff as any failure is, and tried again later."""
        reason = {
            "error_type": type(error).__name__,
            "error": _describe(error),
            "receive_count": item.receive_count,
            "failures": failures,
            "replica": self._replica,
            "queue": self._queue,
            "at": datetime.now(UTC).isoformat(),
        }
        attributes = {
            key: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
            for key, value in (message.get("MessageAttributes") or {}).items()
            if key != DEAD_LETTER_ATTRIBUTE
        }
        attributes = dict(list(attributes.items())[:9])  # SQS takes ten attributes; the reason is one
        attributes[DEAD_LETTER_ATTRIBUTE] = {"DataType": "String", "StringValue": json.dumps(reason)}
        ordering: dict[str, str] = {}
        if self._fifo:
            group = message.get("Attributes", {}).get("MessageGroupId") or message["MessageId"]
            ordering = {"MessageGroupId": group, "MessageDeduplicationId": message["MessageId"]}
        try:
            dlq = await self._broker.queue_url(f"{self._queue}-dlq")
            await self._broker.sqs.send_message(
                QueueUrl=dlq, MessageBody=message["Body"], MessageAttributes=attributes, **ordering
            )
            await self._delete(url, [message])
        except Exception:  # noqa: BLE001 - not moved: retried like any failure, SQS's redrive is the net
            log.warning("dead_letter_failed", exc_info=True, **context)
            await self._release(url, message, retry_delay(failures))
            return
        self._failures.pop(message["MessageId"], None)
        log.error("message_dead_lettered", failures=failures, error_type=reason["error_type"], **context)
        metrics.dead_lettered(self._service, self._queue)

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
