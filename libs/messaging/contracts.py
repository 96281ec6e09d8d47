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

Money = Annotated[Decimal, Field(ge=0, decimal_places=2, max_digits=14)]
Sku = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,63}$")]
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
    name: str = Field(min_length=1, max_length=200)
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$")


# --- order_svc -> orchestrator -------------------------------------------------------
class StartOrderSaga(Command):
    """Sent by order_svc in the transaction that creates the pending order."""

    customer_id: str
    customer_email: str
    currency: str
    items: list[Line]
    total: Money
    payment_token: str
    shipping_address: Address


class SettleUnstartedSaga(Command):
    """Sent by order_svc for an order still pending long after it was placed: if its saga
    never started (its StartOrderSaga was dead-lettered, for instance), the orchestrator
    records the saga as one that could not start, cancels the order and escalates; if it
    started, nothing happens. Carries no order data, so it goes through where the start did not."""

    reason: Reason


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


# --- orchestrator -> any participant -------------------------------------------------
class SettleStep(Command):
    """An operator resolved the saga by hand: this step was put right outside the system, so a
    compensation that arrives later (late, or redriven from a dead-letter queue) must do nothing."""

    reason: Reason


class StepSettled(Reply):
    already_compensated: bool
    """True when the step's compensation had already undone its effect here before the
    settlement arrived: the manual action then undid it a second time."""


# --- escalation ----------------------------------------------------------------------
class CompensationEscalated(Event):
    """Sent to the escalation dead-letter queue when a compensation cannot complete."""

    saga_id: uuid.UUID
    step: str
    command: dict
    last_error: Reason
    attempts: int


class SagaStartFailed(Event):
    """Sent to the escalation queue when an order's saga could not start and the order was
    cancelled for it: a person should find out why (the StartOrderSaga's dead letter)."""

    saga_id: uuid.UUID
    reason: Reason


class SettlementConflict(Event):
    """Sent to the escalation queue when a step settled by hand turns out to have been
    compensated by the system as well: the operator should undo the manual action."""

    saga_id: uuid.UUID
    step: str
    detail: Reason


REGISTRY = MessageRegistry(
    StartOrderSaga, SettleUnstartedSaga,
    CancelOrder, OrderCancelled, ConfirmOrder,
    ReserveInventory, InventoryReserved, InventoryReservationFailed, ReleaseInventory, InventoryReleased,
    ProcessPayment, PaymentProcessed, PaymentFailed, RefundPayment, PaymentRefunded, PaymentRefundFailed,
    FulfillOrder, OrderFulfilled, FulfillmentFailed, CancelShipment, ShipmentCancelled, ShipmentCancellationFailed,
    SendConfirmation, ConfirmationSent, ConfirmationFailed, WithdrawConfirmation, ConfirmationWithdrawn,
    OrderConfirmedEvent, OrderCancelledEvent, CustomerPushed,
    SettleStep, StepSettled,
    CompensationEscalated, SagaStartFailed, SettlementConflict,
)
