"""How queues and topics are described and named, for any system built on this library.

A system lists its own queues and topics with :class:`Queue` and :class:`Topic`; logical
names are used in code and in ``Envelope.reply_to``, and :class:`Naming` turns them into
physical AWS names with a prefix (``SAGA_RESOURCE_PREFIX``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_RECEIVE_COUNT = 10
"""Receives before SQS moves a message to the queue's dead-letter queue. With the consumer's
backoff (1 s doubling, capped at 5 min) a transiently failing message is retried for about
eight minutes before it is dead-lettered; a malformed one is released at once and gets
there within seconds."""


@dataclass(frozen=True)
class Queue:
    name: str
    purpose: str
    dead_letter: bool = True
    visibility_timeout: int = 30
    owner: str = ""
    """The service that consumes the queue."""
    senders: tuple[str, ...] = ()
    """The only services that may send to it: its consumers refuse a message any other claims
    to come from, and on AWS its queue policy denies every other principal ``sqs:SendMessage``."""
    fifo: bool = False
    """A FIFO queue, its messages grouped by saga: SQS hands out a group's messages in the
    order they reached the queue, and none while an earlier one of the group is in flight
    (being handled, waiting out a retry's backoff) until it is deleted or dead-lettered.
    Its physical name, and its dead-letter queue's, end in ``.fifo``."""

    @property
    def dlq(self) -> str:
        return f"{self.name}-dlq"


@dataclass(frozen=True)
class Topic:
    name: str
    purpose: str


@dataclass(frozen=True)
class Naming:
    """Turns logical names into physical AWS resource names."""

    prefix: str = "saga"
    fifo: frozenset[str] = frozenset()
    """Logical names of the FIFO queues (a system's topology sets it; see :class:`Queue`)."""
    senders: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Logical queue name -> the services that may send to it (:attr:`Queue.senders`); a queue
    not named takes messages from any."""

    def is_fifo(self, logical: str) -> bool:
        """Whether ``logical`` names a FIFO queue or the dead-letter queue of one."""
        return logical in self.fifo or (logical.endswith("-dlq") and logical.removesuffix("-dlq") in self.fifo)

    def physical(self, logical: str) -> str:
        name = f"{self.prefix}-{logical}" if self.prefix else logical
        return f"{name}.fifo" if self.is_fifo(logical) else name
