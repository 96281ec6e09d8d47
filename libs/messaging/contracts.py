"""Every message exchanged by the order saga: the contract between services.

Commands are imperative (``ReserveInventory``) and go to one participant's command queue;
replies are past tense (``InventoryReserved``) or name the failure
(``InventoryReservationFailed``) and go to the queue named in the command's ``reply_to``;
events (``OrderConfirmed``) go to an SNS topic for whoever subscribes.

The JSON Schemas in ``messaging/schemas/`` are generated from these classes
(``python -m messaging.schemas``) and checked against them by the unit tests.
"""
from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from .envelope import Message, MessageRegistry
from .text import Text

Money = Annotated[Decimal, Field(ge=0, decimal_places=2, max_digits=14)]
SKU_PATTERN = r"^[A-Z0-9][A-Z0-9-]{0,63}$"
Sku = Annotated[str, Field(pattern=SKU_PATTERN)]
Reason = Annotated[str, Field(max_length=500)]


class Command(Message):
    kind: ClassVar = "command"
    order_id: uuid.UUID


class Reply(Message):
    kind: ClassVar = "reply"
    order_id: uuid.UUID


class FailureReply(Reply):
    reason: Reason


class Event(Message):
    kind: ClassVar = "event"
    order_id: uuid.UUID


class Part(BaseModel):
    """A value embedded in a message."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Line(Part):
    sku: Sku
    quantity: int = Field(gt=0, le=1000)
    unit_price: Money


class Address(Part):
    name: Text = Field(min_length=1, max_length=200)
    line1: Text = Field(min_length=1, max_length=200)
    line2: Text | None = Field(default=None, max_length=200)
    city: Text = Field(min_length=1, max_length=100)
    postal_code: Text = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$")


# --- order_svc -> orchestrator -------------------------------------------------------
class StartOrderSaga(Command):
    """Sent by order_svc in the transaction that creates the pending order."""

    carries_personal_data: ClassVar = True

    customer_id: str
    customer_email: str
    currency: str
    items: list[Line]
    total: Money
    payment_token: str
    shipping_address: Address


# --- orchestrator -> order_svc -------------------------------------------------------
class CancelOrder(Command):
    reason: Reason


class OrderCancelled(Reply):
    pass


class ConfirmOrder(Command):
    """Sent when the saga completed. No reply: nothing waits for it."""


# --- inventory_svc -------------------------------------------------------------------
class ReserveInventory(Command):
    items: list[Line] = Field(min_length=1)


class InventoryReserved(Reply):
    pass


class InventoryReservationFailed(FailureReply):
    pass


class ReleaseInventory(Command):
    pass


class InventoryReleased(Reply):
    pass


# --- payment_svc ---------------------------------------------------------------------
class ProcessPayment(Command):
    carries_personal_data: ClassVar = True

    amount: Money
    currency: str
    payment_token: str


class PaymentProcessed(Reply):
    payment_id: uuid.UUID


class PaymentFailed(FailureReply):
    pass


class RefundPayment(Command):
    pass


class PaymentRefunded(Reply):
    amount: Money


class PaymentRefundFailed(FailureReply):
    pass


# --- fulfillment_svc -----------------------------------------------------------------
class FulfillOrder(Command):
    carries_personal_data: ClassVar = True

    items: list[Line] = Field(min_length=1)
    shipping_address: Address


class OrderFulfilled(Reply):
    shipment_id: uuid.UUID


class FulfillmentFailed(FailureReply):
    pass


class CancelShipment(Command):
    pass


class ShipmentCancelled(Reply):
    pass


class ShipmentCancellationFailed(FailureReply):
    pass


# --- notification_svc ----------------------------------------------------------------
class SendConfirmation(Command):
    carries_personal_data: ClassVar = True

    customer_id: str
    customer_email: str
    total: Money
    currency: str


class ConfirmationSent(Reply):
    pass


class ConfirmationFailed(FailureReply):
    pass


class WithdrawConfirmation(Command):
    """Sent only when send_confirmation timed out: if the confirmation was never sent it
    must not be sent later for a cancelled order. An email already sent cannot be unsent."""


class ConfirmationWithdrawn(Reply):
    pass


# --- domain events on SNS ------------------------------------------------------------
class OrderConfirmedEvent(Event):
    """Published on the order-events topic once an order is confirmed."""

    total: Money
    currency: str


class OrderCancelledEvent(Event):
    """Published on the order-events topic once an order is cancelled."""

    reason: Reason


class CustomerPushed(Event):
    """Published on the customer-push topic; the mobile push gateway subscribes to it."""

    customer_id: str
    text: str = Field(max_length=200)


# --- escalation ----------------------------------------------------------------------
class CompensationEscalated(Event):
    """Sent to the escalation dead-letter queue when a compensation cannot complete."""

    saga_id: uuid.UUID
    step: str
    command: dict
    last_error: Reason
    attempts: int


# Upcasters from the previous schema version (envelope.register_upcaster) go here, next to the
# classes whose shape they change. None while SCHEMA_VERSION is 1.

REGISTRY = MessageRegistry(
    StartOrderSaga,
    CancelOrder, OrderCancelled, ConfirmOrder,
    ReserveInventory, InventoryReserved, InventoryReservationFailed, ReleaseInventory, InventoryReleased,
    ProcessPayment, PaymentProcessed, PaymentFailed, RefundPayment, PaymentRefunded, PaymentRefundFailed,
    FulfillOrder, OrderFulfilled, FulfillmentFailed, CancelShipment, ShipmentCancelled, ShipmentCancellationFailed,
    SendConfirmation, ConfirmationSent, ConfirmationFailed, WithdrawConfirmation, ConfirmationWithdrawn,
    OrderConfirmedEvent, OrderCancelledEvent, CustomerPushed,
    CompensationEscalated,
)

PERSONAL_MESSAGE_TYPES = frozenset(t.message_type() for t in REGISTRY if t.carries_personal_data)
"""Messages that carry a payment token, an email address or a street address: their outbox
rows are deleted as soon as they are published."""
