"""Every message exchanged by the order saga: the contract between services.

Commands are imperative (``ReserveInventory``) and go to one participant's command queue;
replies are past tense (``InventoryReserved``) or name the failure
(``InventoryReservationFailed``) and go to the queue named in the command's ``reply_to``;
events (``OrderConfirmed``) go to an SNS topic for whoever subscribes.

The JSON Schemas in ``contracts/schemas/`` are generated from these classes
(``python -m contracts.schemas``) and checked against them by the unit tests.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from messaging.envelope import Message, MessageRegistry
from messaging.text import Text

Money = Annotated[Decimal, Field(ge=0, decimal_places=2, max_digits=14)]
SKU_PATTERN = r"^[A-Z0-9][A-Z0-9-]{0,63}$"
Sku = Annotated[str, Field(pattern=SKU_PATTERN)]
Reason = Annotated[str, Field(max_length=500)]
CUSTOMER_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
"""A customer's id as the orders API takes it (the token's subject, or the body's)."""


class Command(Message):
    kind: ClassVar = "command"
    log_context: ClassVar = ("order_id",)
    order_id: uuid.UUID


class Reply(Message):
    kind: ClassVar = "reply"
    log_context: ClassVar = ("order_id",)
    order_id: uuid.UUID


class FailureReply(Reply):
    reason: Reason


class Event(Message):
    kind: ClassVar = "event"
    log_context: ClassVar = ("order_id",)
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
class StartSaga(Command):
    """A request to start a saga; ``definition`` names which one."""

    definition: str


class StartOrderSaga(StartSaga):
    """Sent by order_svc in the transaction that creates the pending order."""

    carries_personal_data: ClassVar = True

    definition: Literal["order"] = "order"
    customer_id: str
    customer_email: str
    currency: str
    items: list[Line]
    total: Money
    payment_token: str
    shipping_address: Address


class StartOrderCancellation(StartSaga):
    """Sent by order_svc when the customer cancels a confirmed order."""

    carries_personal_data: ClassVar = True
    definition: Literal["order_cancellation"] = "order_cancellation"
    customer_id: str
    customer_email: str | None
    """From the order, the system of record; None for an order placed before it was kept."""


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


class CancelConfirmedOrder(Command):
    """The customer's cancellation reached its last business step."""

    reason: Reason


class ConfirmedOrderCancelled(Reply):
    pass


class CancelConfirmedOrderRefused(FailureReply):
    pass


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


class ReturnReservedStock(Command):
    """The order's reserved stock goes back to available (customer cancellation)."""


class ReservedStockReturned(Reply):
    pass


# --- payment_svc ---------------------------------------------------------------------
class ScreenOrder(Command):
    """Order saga version 2: the fraud screen before the charge (no effect to undo)."""

    total: Money
    currency: str


class OrderScreened(Reply):
    pass


class OrderScreeningFailed(FailureReply):
    pass


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
    payment_id: uuid.UUID | None = None
    """The charge to refund, when the saga knows it; else the saga's charge."""


class PaymentRefunded(Reply):
    amount: Money


class PaymentRefundFailed(FailureReply):
    pass


class RefundCharge(Command):
    """Refund an order's whole charge (customer cancellation)."""


class ChargeRefunded(Reply):
    amount: Money


class ChargeRefundFailed(FailureReply):
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
    shipment_id: uuid.UUID | None = None
    """The shipment to cancel, when the saga knows it; else the saga's shipment."""


class ShipmentCancelled(Reply):
    pass


class ShipmentCancellationFailed(FailureReply):
    pass


class CancelScheduledShipment(Command):
    """The customer cancels: stop the order's parcel unless it has left the warehouse."""


class ScheduledShipmentCancelled(Reply):
    pass


class ShipmentAlreadyDispatched(FailureReply):
    pass


class ReinstateShipment(Command):
    """Undo of CancelScheduledShipment, sent only when it timed out: the order stays
    confirmed, so its parcel must stay scheduled."""


class ShipmentReinstated(Reply):
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


class SendCancellationNotice(Command):
    """Tell the customer the order is cancelled and refunded."""

    carries_personal_data: ClassVar = True

    customer_id: str
    customer_email: str | None


class CancellationNoticeSent(Reply):
    pass


class CancellationNoticeFailed(FailureReply):
    pass


class SendCancellationRefusal(Command):
    """Tell the customer the order could not be cancelled. No reply: it ends the saga."""

    carries_personal_data: ClassVar = True
    customer_id: str
    customer_email: str | None
    reason: Reason


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


def step_settled(command: SettleStep, already_compensated: bool) -> StepSettled:
    """A participant's answer to SettleStep (``messaging.participant.settle`` builds it)."""
    return StepSettled(order_id=command.order_id, already_compensated=already_compensated)


# --- orchestrator, about any saga -----------------------------------------------------
class CompensationEscalated(Message):
    """Sent to the escalation dead-letter queue when a compensation cannot complete, or a
    step after a saga's pivot still fails after its budget."""

    kind: ClassVar = "event"
    saga_id: uuid.UUID
    definition: str
    subject: str
    """What the saga is about (the value of its definition's subject key, e.g. an order id)."""
    step: str
    command: dict[str, Any]
    last_error: Reason
    attempts: int


class CheckSagaDeadlines(Message):
    """The orchestrator to itself, in the saga's group of the FIFO ``orchestrator-replies``:
    judge the saga's deadlines that passed by ``checked_at``. SQS hands it out only after
    every message of the saga that reached the queue before it was handled or dead-lettered,
    so a reply that came in time wins, whichever replica received it and whatever became of it."""

    kind: ClassVar = "command"
    checked_at: datetime
    """When the check was staged (the orchestrator's clock): deadlines up to this time, less a
    margin for the clocks of other replicas, are judged."""


class EraseCustomerData(Message):
    """Sent by the orchestrator to every participant when an operator asks that a customer's
    personal data be erased: each removes what it keeps of that customer (by ``customer_id``,
    or in the records of ``order_ids``) and keeps the books (ids, amounts)."""

    kind: ClassVar = "command"
    log_context: ClassVar = ("erasure_id",)
    erasure_id: uuid.UUID
    customer_id: str = Field(pattern=CUSTOMER_ID)
    order_ids: list[uuid.UUID] = Field(max_length=10_000)


class CustomerDataErased(Message):
    """A participant's answer to EraseCustomerData: how many of its records it erased (the
    envelope's sender says which participant, as for every reply)."""

    kind: ClassVar = "reply"
    log_context: ClassVar = ("erasure_id",)
    erasure_id: uuid.UUID
    erased: int = Field(ge=0)


def customer_data_erased(request: EraseCustomerData, erased: int) -> CustomerDataErased:
    return CustomerDataErased(erasure_id=request.erasure_id, erased=erased)


# Upcasters from the previous schema version (envelope.register_upcaster) go here, next to the
# classes whose shape they change. None while SCHEMA_VERSION is 1.


class SagaStatusChanged(Message):
    """Sent to a saga's initiator whenever the saga's status changes; ``at`` orders them."""

    kind: ClassVar = "event"
    saga_id: uuid.UUID
    definition: str
    subject: str
    status: str
    at: datetime


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
    StartOrderSaga,
    StartOrderCancellation,
    SettleUnstartedSaga,
    CancelOrder,
    OrderCancelled,
    ConfirmOrder,
    CancelConfirmedOrder,
    ConfirmedOrderCancelled,
    CancelConfirmedOrderRefused,
    ReturnReservedStock,
    ReservedStockReturned,
    RefundCharge,
    ChargeRefunded,
    ChargeRefundFailed,
    CancelScheduledShipment,
    ScheduledShipmentCancelled,
    ShipmentAlreadyDispatched,
    ReinstateShipment,
    ShipmentReinstated,
    SendCancellationNotice,
    CancellationNoticeSent,
    CancellationNoticeFailed,
    SendCancellationRefusal,
    ReserveInventory,
    InventoryReserved,
    InventoryReservationFailed,
    ReleaseInventory,
    InventoryReleased,
    ScreenOrder,
    OrderScreened,
    OrderScreeningFailed,
    ProcessPayment,
    PaymentProcessed,
    PaymentFailed,
    RefundPayment,
    PaymentRefunded,
    PaymentRefundFailed,
    FulfillOrder,
    OrderFulfilled,
    FulfillmentFailed,
    CancelShipment,
    ShipmentCancelled,
    ShipmentCancellationFailed,
    SendConfirmation,
    ConfirmationSent,
    ConfirmationFailed,
    WithdrawConfirmation,
    ConfirmationWithdrawn,
    OrderConfirmedEvent,
    OrderCancelledEvent,
    CustomerPushed,
    SettleStep,
    StepSettled,
    CompensationEscalated,
    SagaStatusChanged,
    SagaStartFailed,
    SettlementConflict,
    CheckSagaDeadlines,
    EraseCustomerData,
    CustomerDataErased,
)

PERSONAL_MESSAGE_TYPES = frozenset(t.message_type() for t in REGISTRY if t.carries_personal_data)
"""Messages that carry a payment token, an email address or a street address: their outbox
rows are deleted as soon as they are published."""
