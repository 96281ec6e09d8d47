"""Queues and topics, named after their owner and purpose.

Logical names are used in code and in ``Envelope.reply_to``; the physical name adds a
prefix (``SAGA_RESOURCE_PREFIX``, default ``saga``) so several stacks can share an
account. ``infra/`` declares the same resources in Terraform; a test checks they agree.
"""

from __future__ import annotations

# Re-exported: whoever reads this system's queues also needs how they are described and named.
from collections.abc import Mapping
from dataclasses import dataclass, field

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

# Services by the name they send under (``Envelope.sender``, each ``ServiceDefinition.name``).
ORDER_SVC, ORCHESTRATOR = "order", "orchestrator"
PARTICIPANT_SERVICES = ("order", "inventory", "payment", "fulfillment", "notification")
_FROM_ORCHESTRATOR = (ORCHESTRATOR,)

QUEUES: tuple[Queue, ...] = (
    Queue(ORDER_COMMANDS, "commands to order_svc (cancel, confirm)", owner=ORDER_SVC, senders=_FROM_ORCHESTRATOR),
    Queue(INVENTORY_COMMANDS, "commands to inventory_svc (reserve, release)", owner="inventory", senders=_FROM_ORCHESTRATOR),
    Queue(PAYMENT_COMMANDS, "commands to payment_svc (charge, refund)", owner="payment", senders=_FROM_ORCHESTRATOR),
    Queue(
        FULFILLMENT_COMMANDS,
        "commands to fulfillment_svc (ship, cancel shipment)",
        owner="fulfillment",
        senders=_FROM_ORCHESTRATOR,
    ),
    Queue(
        NOTIFICATION_COMMANDS,
        "commands to notification_svc (send confirmation)",
        owner="notification",
        senders=_FROM_ORCHESTRATOR,
    ),
    Queue(ORCHESTRATOR_COMMANDS, "saga start requests from order_svc", owner=ORCHESTRATOR, senders=(ORDER_SVC,)),
    # FIFO, grouped by saga: a deadline is judged by a message of the saga's own group
    # (CheckSagaDeadlines), so it is handled only after every reply that reached the queue
    # before it, whichever orchestrator replica received that reply and whatever became of it.
    Queue(
        ORCHESTRATOR_REPLIES,
        "participants' replies to the orchestrator, and its deadline checks",
        owner=ORCHESTRATOR,
        senders=(*PARTICIPANT_SERVICES, ORCHESTRATOR),
        fifo=True,
    ),
    # The escalation queue is itself the operator's dead-letter queue: nothing consumes it.
    Queue(
        SAGA_ESCALATIONS,
        "compensations that could not complete, for a person to resolve",
        senders=_FROM_ORCHESTRATOR,
        dead_letter=False,
    ),
)
"""Besides the senders named here, the orchestrator sends to every queue that has a dead-letter
queue when an operator redrives one (the message keeps its original sender)."""

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
    senders: Mapping[str, frozenset[str]] = field(default_factory=lambda: SENDERS)


SENDERS: dict[str, frozenset[str]] = {q.name: frozenset(q.senders) for q in QUEUES}
"""Logical queue name -> the services that may send to it."""

PARTICIPANT_OF: dict[str, str] = {
    q.owner: q.name for q in QUEUES if q.owner in PARTICIPANT_SERVICES and q.name.endswith("-commands")
}
"""A participant service -> its command queue, the name saga steps know it by."""
