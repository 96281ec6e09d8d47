"""Every saga step of this system, once: its participant, command, replies and compensation.

The saga definitions (``orchestrator/order_saga.py``, ``cancellation_saga.py``) invoke these;
each participant's handlers register from the steps its queue owns (:func:`owned_by`) and
answer SettleStep for every one of them. ``tests/unit/test_steps.py`` ties every step of every
definition to the participant that handles it.
"""

from __future__ import annotations

from messaging.steps import Call as Call
from messaging.steps import StepContract as StepContract
from messaging.steps import by_name

from . import messages as c
from . import topology as q

# --- the order saga ------------------------------------------------------------------
CREATE_ORDER = StepContract(
    "create_order",
    q.ORDER_COMMANDS,
    action=None,  # order_svc creates the pending order in the transaction that starts the saga
    compensation=Call(c.CancelOrder, c.OrderCancelled),
)
RESERVE_INVENTORY = StepContract(
    "reserve_inventory",
    q.INVENTORY_COMMANDS,
    action=Call(c.ReserveInventory, c.InventoryReserved, c.InventoryReservationFailed),
    compensation=Call(c.ReleaseInventory, c.InventoryReleased),
)
SCREEN_ORDER = StepContract(
    "screen_order",
    q.PAYMENT_COMMANDS,
    action=Call(c.ScreenOrder, c.OrderScreened, c.OrderScreeningFailed),
    # Screening changes nothing: there is nothing to undo.
)
PROCESS_PAYMENT = StepContract(
    "process_payment",
    q.PAYMENT_COMMANDS,
    action=Call(c.ProcessPayment, c.PaymentProcessed, c.PaymentFailed),
    compensation=Call(c.RefundPayment, c.PaymentRefunded, c.PaymentRefundFailed),
)
FULFILL_ORDER = StepContract(
    "fulfill_order",
    q.FULFILLMENT_COMMANDS,
    action=Call(c.FulfillOrder, c.OrderFulfilled, c.FulfillmentFailed),
    compensation=Call(c.CancelShipment, c.ShipmentCancelled, c.ShipmentCancellationFailed),
)
SEND_CONFIRMATION = StepContract(
    "send_confirmation",
    q.NOTIFICATION_COMMANDS,
    action=Call(c.SendConfirmation, c.ConfirmationSent, c.ConfirmationFailed),
    compensation=Call(c.WithdrawConfirmation, c.ConfirmationWithdrawn),
)

# --- the order_cancellation saga -----------------------------------------------------
# Named in earlier releases after the order saga's compensations (cancel_shipment, refund_payment,
# release_inventory, cancel_order), which other handlers do: sagas started before the rename
# keep those names, and so do their participants' guard rows.
CANCEL_SCHEDULED_SHIPMENT = StepContract(
    "cancel_scheduled_shipment",
    q.FULFILLMENT_COMMANDS,
    action=Call(c.CancelScheduledShipment, c.ScheduledShipmentCancelled, c.ShipmentAlreadyDispatched),
    compensation=Call(c.ReinstateShipment, c.ShipmentReinstated),
    formerly=("cancel_shipment",),
)
REFUND_CHARGE = StepContract(
    "refund_charge",
    q.PAYMENT_COMMANDS,
    action=Call(c.RefundCharge, c.ChargeRefunded, c.ChargeRefundFailed),
    formerly=("refund_payment",),
)
RETURN_RESERVED_STOCK = StepContract(
    "return_reserved_stock",
    q.INVENTORY_COMMANDS,
    action=Call(c.ReturnReservedStock, c.ReservedStockReturned),
    formerly=("release_inventory",),
)
CANCEL_CONFIRMED_ORDER = StepContract(
    "cancel_confirmed_order",
    q.ORDER_COMMANDS,
    action=Call(c.CancelConfirmedOrder, c.ConfirmedOrderCancelled, c.CancelConfirmedOrderRefused),
    formerly=("cancel_order",),
)
SEND_CANCELLATION_NOTICE = StepContract(
    "send_cancellation_notice",
    q.NOTIFICATION_COMMANDS,
    action=Call(c.SendCancellationNotice, c.CancellationNoticeSent, c.CancellationNoticeFailed),
)

STEPS: tuple[StepContract, ...] = (
    CREATE_ORDER,
    RESERVE_INVENTORY,
    SCREEN_ORDER,
    PROCESS_PAYMENT,
    FULFILL_ORDER,
    SEND_CONFIRMATION,
    CANCEL_SCHEDULED_SHIPMENT,
    REFUND_CHARGE,
    RETURN_RESERVED_STOCK,
    CANCEL_CONFIRMED_ORDER,
    SEND_CANCELLATION_NOTICE,
)
BY_NAME = by_name(STEPS)
"""Every step under its name and former names (no two share one)."""


def owned_by(participant: str) -> tuple[StepContract, ...]:
    """The steps whose commands go to ``participant``'s queue."""
    return tuple(s for s in STEPS if s.participant == participant)
