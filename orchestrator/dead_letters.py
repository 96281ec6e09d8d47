"""The operator's view of dead-letter queues, and redriving them.

Two kinds of dead letters exist. ``<queue>-dlq`` holds messages a worker could not
process (SQS moved them after ``maxReceiveCount`` receives); redriving moves them back to
their queue. ``saga-escalations`` holds compensations that could not complete; redriving
one asks the orchestrator to retry that compensation, once the cause has been fixed.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict, dataclass

import structlog
from botocore.config import Config
from botocore.exceptions import ClientError

from contracts import messages as c
from contracts.topology import DEAD_LETTER_QUEUES, SAGA_ESCALATIONS
from messaging.aws import Broker, session
from messaging.envelope import Envelope, MalformedMessage, Message

log = structlog.get_logger("dead_letters", service="orchestrator")
NO_RETRY = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5, read_timeout=30)


@dataclass
class DeadLetter:
    queue: str
    sqs_message_id: str
    message_type: str | None
    saga_id: str | None
    step: str | None
    detail: str
    receive_count: int

    def as_dict(self) -> dict:
        return asdict(self)


def _parse(message: dict) -> tuple[Envelope, Message] | MalformedMessage:
    """The message's envelope and payload, or why it has none: each body is parsed once."""
    try:
        return c.REGISTRY.parse(message["Body"])
    except MalformedMessage as error:
        return error


def describe(
    queue: str, message: dict, parsed: tuple[Envelope, Message] | MalformedMessage, steps: dict[str, str] | None = None
) -> DeadLetter:
    """``steps`` maps a message type (command or reply) to the saga step it belongs to."""
    receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0))
    if isinstance(parsed, MalformedMessage):
        return DeadLetter(queue, message["MessageId"], None, None, None, f"malformed: {str(parsed)[:200]}", receive_count)
    envelope, payload = parsed
    if isinstance(payload, c.SettlementConflict):
        return DeadLetter(
            queue,
            message["MessageId"],
            envelope.message_type,
            str(payload.saga_id),
            payload.step,
            f"order {payload.order_id}: {payload.detail}",
            receive_count,
        )
    if isinstance(payload, c.SagaStartFailed):
        return DeadLetter(
            queue,
            message["MessageId"],
            envelope.message_type,
            str(payload.saga_id),
            # Raised when a SettleUnstartedSaga found no saga: at the step it fails such a saga at.
            (steps or {}).get(c.SettleUnstartedSaga.message_type()),
            f"order {payload.order_id} cancelled: {payload.reason}",
            receive_count,
        )
    if isinstance(payload, c.CompensationEscalated):
        return DeadLetter(
            queue,
            message["MessageId"],
            envelope.message_type,
            str(payload.saga_id),
            payload.step,
            f"{payload.command['type']} failed after {payload.attempts} attempt(s): {payload.last_error}",
            receive_count,
        )
    return DeadLetter(
        queue,
        message["MessageId"],
        envelope.message_type,
        str(envelope.saga_id or "") or None,
        # The envelope names the step as its saga knows it (a former name, for a saga started
        # before a rename); a message without one is placed by its type.
        envelope.step or (steps or {}).get(envelope.message_type),
        "not processed by its consumer",
        receive_count,
    )


EMPTY_RECEIVES = 3  # empty short polls in a row before a queue counts as read
MAX_RECEIVES = 1000  # receives per pass over a queue, whatever happens
PEEK_VISIBILITY = 2  # seconds a listed message is hidden, so the next receive brings others


async def peek(broker: Broker, queue: str, limit: int = 100) -> list[dict]:
    """Up to ``limit`` messages of ``queue``, left in place: each is hidden for
    ``PEEK_VISIBILITY`` seconds while the listing goes on, then visible again."""
    url = await broker.queue_url(queue)
    seen: dict[str, dict] = {}
    empty = 0
    while len(seen) < limit and empty < 2:  # SQS may answer a short poll empty while messages remain
        response = await broker.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, limit - len(seen)),
            VisibilityTimeout=PEEK_VISIBILITY,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        fresh = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
        empty = 0 if fresh else empty + 1
        seen.update({m["MessageId"]: m for m in fresh})
    messages = list(seen.values())
    for start in range(0, len(messages), 10):  # visible again at once for the next look
        await broker.sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(messages[start : start + 10])
            ],
        )
    return messages[:limit]


async def list_all(broker: Broker, limit: int = 100, steps: dict[str, str] | None = None) -> list[DeadLetter]:
    letters = []
    for queue in DEAD_LETTER_QUEUES:
        seen: set[uuid.UUID] = set()
        for message in await peek(broker, queue, limit):
            # The relay publishes at least once, so an escalation may be there twice
            # under one envelope id: it is one case, listed once.
            parsed = _parse(message)
            if not isinstance(parsed, MalformedMessage):
                if parsed[0].message_id in seen:
                    continue
                seen.add(parsed[0].message_id)
            letters.append(describe(queue, message, parsed, steps))
    return letters


@dataclass
class Depth:
    queue: str
    waiting: int | None
    """Approximate messages ready to receive; None when the queue could not be asked."""
    in_flight: int | None
    """Approximate messages received and not yet deleted or made visible again."""


async def depths(broker: Broker) -> list[Depth]:
    """How many messages each dead-letter queue (``saga-escalations`` included) holds."""

    async def depth(queue: str) -> Depth:
        try:
            attributes = (
                await broker.sqs.get_queue_attributes(
                    QueueUrl=await broker.queue_url(queue),
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )
            )["Attributes"]
        except ClientError as error:
            log.warning("queue_depth_unavailable", queue=queue, error=str(error)[:200])
            return Depth(queue, None, None)
        return Depth(
            queue, int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])
        )

    return list(await asyncio.gather(*(depth(queue) for queue in DEAD_LETTER_QUEUES)))


async def take(broker: Broker, queue: str):
    """Yield (message, delete, release) for every message in ``queue`` once.

    Each message stays hidden while the caller works through the queue; those the caller
    released become visible again only at the end, so none is received twice meanwhile.
    """
    url = await broker.queue_url(queue)
    released: list[str] = []
    seen: set[str] = set()
    empty = 0
    try:
        # A short poll samples only some of SQS's servers and may come back empty while
        # messages remain: stop only after several empty receives in a row, and after a
        # bounded number of receives whatever happens.
        for _ in range(MAX_RECEIVES):
            response = await broker.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0, MessageAttributeNames=["All"]
            )
            messages = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
            empty = 0 if messages else empty + 1
            if empty >= EMPTY_RECEIVES:
                return
            for message in messages:
                seen.add(message["MessageId"])

                async def delete(handle=message["ReceiptHandle"]):
                    await broker.sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)

                async def release(handle=message["ReceiptHandle"]):
                    released.append(handle)

                yield message, delete, release
    finally:
        for handle in released:
            await broker.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)


async def redrive_queue(broker: Broker, dlq: str) -> dict:
    """Move every message of ``dlq`` back to its source queue. ``messages`` in the result
    names the saga and type of each message moved (with ``StartMessageMoveTask``: of those
    seen just before the task started)."""
    if dlq not in DEAD_LETTER_QUEUES or dlq == SAGA_ESCALATIONS:
        raise ValueError(f"{dlq} is not a redrivable dead-letter queue")
    source = dlq.removesuffix("-dlq")
    try:
        waiting = await peek(broker, dlq)
        # One attempt only: an endpoint without the action (some emulators) answers 5xx,
        # which the default retry policy would retry for seconds.
        async with session().client("sqs", config=NO_RETRY) as sqs:
            task = await sqs.start_message_move_task(SourceArn=broker.queue_arn(dlq), DestinationArn=broker.queue_arn(source))
        return {
            "queue": dlq,
            "method": "StartMessageMoveTask",
            "moved": None,
            "task": task.get("TaskHandle"),
            "messages": _sagas_of(waiting),
        }
    except (ClientError, NotImplementedError) as error:
        log.info("message_move_task_unavailable", queue=dlq, error=str(error)[:200])
    source_url = await broker.queue_url(source)
    moved = []
    async for message, delete, _ in take(broker, dlq):
        # Send before delete: a crash in between leaves a copy in both queues, never in
        # neither, and the receiver's inbox drops the copy by its message id.
        await broker.sqs.send_message(
            QueueUrl=source_url,
            MessageBody=message["Body"],
            MessageAttributes=message.get("MessageAttributes", {}),
            **(_fifo_entry(message) if broker.naming.is_fifo(source) else {}),
        )
        await delete()
        moved.append(message)
    return {"queue": dlq, "method": "message-by-message", "moved": len(moved), "messages": _sagas_of(moved)}


def _fifo_entry(message: dict) -> dict[str, str]:
    """A FIFO source queue's group (the saga's, as the relay sends it) and a fresh deduplication
    id: a message redriven twice within SQS's five minutes must arrive again (the inbox drops a copy)."""
    saga = message.get("MessageAttributes", {}).get("saga_id", {}).get("StringValue")
    return {"MessageGroupId": saga or message["MessageId"], "MessageDeduplicationId": uuid.uuid4().hex}


def _sagas_of(messages: list[dict]) -> list[dict]:
    """The saga and type of each message that has them (a malformed one has neither)."""
    found = []
    for message in messages:
        parsed = _parse(message)
        if not isinstance(parsed, MalformedMessage) and parsed[0].saga_id is not None:
            found.append({"saga_id": str(parsed[0].saga_id), "message_type": parsed[0].message_type})
    return found


def escalation(message: dict) -> tuple[c.CompensationEscalated, str] | None:
    """An escalation and its message id, or None for anything else in the queue."""
    parsed = _parse(message)
    if isinstance(parsed, MalformedMessage) or not isinstance(parsed[1], c.CompensationEscalated):
        return None
    return parsed[1], str(parsed[0].message_id)


async def redrive_escalations(broker: Broker, retry) -> dict:
    """Retry the compensation behind every escalation in the queue, once per saga and step;
    ``retry(saga_id, step)`` returns an outcome and the ids of the step's escalations raised
    before the retry. Copies of those are deleted; an escalation raised by a retry failing
    again has a new id and is left for the next redrive, so a call always ends."""
    outcomes = []
    retried: dict[tuple, set[str]] = {}
    async for message, delete, release in take(broker, SAGA_ESCALATIONS):
        found = escalation(message)
        if found is None:
            await release()
            continue
        escalated, message_id = found
        key = (escalated.saga_id, escalated.step)
        if key in retried:
            if message_id in retried[key]:  # a copy (the relay is at least once)
                await delete()
            else:  # raised by this call's retry failing again
                await release()
            continue
        outcome, known = await retry(escalated.saga_id, escalated.step)
        retried[key] = known | {message_id}
        outcomes.append({"saga_id": str(escalated.saga_id), "step": escalated.step, "outcome": outcome})
        # Deleted only after the retry committed; a crash in between redrives it again,
        # and the retry then finds the step no longer failed and skips it.
        await delete()
    return {"queue": SAGA_ESCALATIONS, "method": "retry-compensation", "moved": len(outcomes), "sagas": outcomes}


async def discard_escalations(broker: Broker, escalation_ids: set[str]) -> int:
    """Remove the escalations with these message ids (those raised before an operator acted
    on the saga), so the queue lists only open cases; one raised after has another id and stays."""
    if not escalation_ids:
        return 0
    discarded = 0
    async for message, delete, release in take(broker, SAGA_ESCALATIONS):
        found = escalation(message)
        if found and found[1] in escalation_ids:
            await delete()
            discarded += 1
        else:
            await release()
    return discarded
