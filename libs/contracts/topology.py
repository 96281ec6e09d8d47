"""Queues and topics, named after their owner and purpose.

Logical names are used in code and in ``Envelope.reply_to``; the physical name adds a
prefix (``SAGA_RESOURCE_PREFIX``, default ``saga``) so several stacks can share an
account. ``infra/`` declares the same resources in Terraform; a test checks they agree.
"""

from __future__ import annotations

# Re-exported: whoever reads this system's queues also needs how they are described and named.
from dataclasses import dataclass

from messaging import naming
from messaging.naming import MAX_RECEIVE_COUNT as MAX_RECEIVE_COUNT
from messaging.naming import Queue as Queue
from messaging.naming import Topic as Topic

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
    # FIFO, grouped by saga: a deadline is judged by a message of the saga's own group
    # (CheckSagaDeadlines), so it is handled only after every reply that reached the queue
    # before it, whichever orchestrator replica received that reply and whatever became of it.
    Queue(ORCHESTRATOR_REPLIES, "participants' replies to the orchestrator, and its deadline checks", fifo=True),
    # The escalation queue is itself the operator's dead-letter queue: nothing consumes it.
    Queue(SAGA_ESCALATIONS, "compensations that could not complete, for a person to resolve", dead_letter=False),
)

TOPICS: tuple[Topic, ...] = (
    Topic(ORDER_EVENTS, "order domain events (OrderConfirmedEvent, OrderCancelledEvent)"),
    Topic(CUSTOMER_PUSH, "push notifications to customers"),
)

DEAD_LETTER_QUEUES: tuple[str, ...] = tuple(q.dlq for q in QUEUES if q.dead_letter) + (SAGA_ESCALATIONS,)

FIFO_QUEUES: frozenset[str] = frozenset(q.name for q in QUEUES if q.fifo)


@dataclass(frozen=True)
class Naming(naming.Naming):
    """This system's physical names: :class:`messaging.naming.Naming` with its FIFO queues."""

    fifo: frozenset[str] = FIFO_QUEUES
