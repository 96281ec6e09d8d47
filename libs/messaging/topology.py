"""Queues and topics, named after their owner and purpose.

Logical names are used in code and in ``Envelope.reply_to``; the physical name adds a
prefix (``SAGA_RESOURCE_PREFIX``, default ``saga``) so several stacks can share an
account. ``infra/`` declares the same resources in Terraform; a test checks they agree.
"""
from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def dlq(self) -> str:
        return f"{self.name}-dlq"


@dataclass(frozen=True)
class Topic:
    name: str
    purpose: str


ORDER_COMMANDS = "order-commands"
INVENTORY_COMMANDS = "inventory-commands"
PAYMENT_COMMANDS = "payment-commands"
FULFILLMENT_COMMANDS = "fulfillment-commands"
NOTIFICATION_COMMANDS = "notification-commands"
ORCHESTRATOR_COMMANDS = "orchestrator-commands"
ORCHESTRATOR_REPLIES = "orchestrator-replies"
SAGA_ESCALATIONS = "saga-escalations"
ORDER_EVENTS = "order-events"
CUSTOMER_PUSH = "customer-push"

QUEUES: tuple[Queue, ...] = (
    Queue(ORDER_COMMANDS, "commands to order_svc (cancel, confirm)"),
    Queue(INVENTORY_COMMANDS, "commands to inventory_svc (reserve, release)"),
    Queue(PAYMENT_COMMANDS, "commands to payment_svc (charge, refund)"),
    Queue(FULFILLMENT_COMMANDS, "commands to fulfillment_svc (ship, cancel shipment)"),
    Queue(NOTIFICATION_COMMANDS, "commands to notification_svc (send confirmation)"),
    Queue(ORCHESTRATOR_COMMANDS, "saga start requests from order_svc"),
    Queue(ORCHESTRATOR_REPLIES, "participants' replies to the orchestrator"),
    # The escalation queue is itself the operator's dead-letter queue: nothing consumes it.
    Queue(SAGA_ESCALATIONS, "compensations that could not complete, for a person to resolve", dead_letter=False),
)

TOPICS: tuple[Topic, ...] = (
    Topic(ORDER_EVENTS, "order domain events (OrderConfirmedEvent, OrderCancelledEvent)"),
    Topic(CUSTOMER_PUSH, "push notifications to customers"),
)

DEAD_LETTER_QUEUES: tuple[str, ...] = tuple(q.dlq for q in QUEUES if q.dead_letter) + (SAGA_ESCALATIONS,)


@dataclass(frozen=True)
class Naming:
    """Turns logical names into physical AWS resource names."""

    prefix: str = "saga"

    def physical(self, logical: str) -> str:
        return f"{self.prefix}-{logical}" if self.prefix else logical
