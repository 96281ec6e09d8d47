"""What a consumer hands its handler: the messages one receive brought, and what became of each.

A handler of a whole receive (:meth:`messaging.bus.MessageBus.handle_batch`) answers with one
outcome per message: ``None`` when it was handled (the consumer deletes it), else the
exception that kept it from being handled (the consumer makes it visible again, at once for
a :class:`~messaging.envelope.MalformedMessage` or a :class:`Skipped` one, after a backoff
otherwise). Messages of one ``group`` (a FIFO queue's message group) are handled in the order
received, and after one of them fails the later ones are :class:`Skipped`, so none overtakes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

Handle = Callable[[str, int], Awaitable[None]]
"""Called with one message body and its receive count; returns once the effect is committed."""


@dataclass(frozen=True)
class Received:
    body: str
    receive_count: int = 1
    group: str | None = None
    """The FIFO message group; None on a standard queue (every message independent)."""
    trace: dict[str, str] = field(default_factory=dict)
    """The trace context the message carries (``traceparent``/``tracestate`` attributes)."""
    queue: str = ""
    """The logical queue it was received from."""
    sender_id: str | None = None
    """SQS's ``SenderId`` of the message: the principal that sent it, which it cannot forge."""


class Skipped(Exception):
    """Not handled: an earlier message of its group in the same receive failed."""


class NotMine(Exception):
    """A handler's answer for a message this process cannot handle but another may (one that
    runs another release, during a rolling deploy): it is handed back at once, for whichever
    process receives it next, and not counted as a failure. SQS still counts the receive, so
    one that no process takes ends in the dead-letter queue after ``maxReceiveCount``."""


Outcome = Exception | None
HandleBatch = Callable[[Sequence[Received]], Awaitable[list[Outcome]]]


def runs(received: Sequence[Received]) -> list[list[int]]:
    """The positions of ``received`` as runs handled one after the other: one run per group,
    in the order received; every message without a group a run of its own."""
    grouped: dict[object, list[int]] = {}
    for position, message in enumerate(received):
        grouped.setdefault(message.group if message.group is not None else ("alone", position), []).append(position)
    return list(grouped.values())


def one_by_one(handle: Handle) -> HandleBatch:
    """A receive handled a message at a time by ``handle`` (each its own transaction): the
    runs side by side, each run in order and stopped at its first failure."""

    async def handle_batch(received: Sequence[Received]) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(received)

        async def run(positions: list[int]) -> None:
            for index, position in enumerate(positions):
                try:
                    await handle(received[position].body, received[position].receive_count)
                except Exception as error:  # noqa: BLE001 - the consumer decides what a failure means
                    outcomes[position] = error
                    for later in positions[index + 1 :]:
                        outcomes[later] = Skipped()
                    return

        await asyncio.gather(*(run(positions) for positions in runs(received)))
        return outcomes

    return handle_batch
