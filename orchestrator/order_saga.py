"""The order saga, top to bottom: each step, who does it, what undoes it."""

from __future__ import annotations

from datetime import timedelta

from contracts import messages as c
from contracts import topology as q

from .engine import Data, Invoke, Local, Notify, SagaDefinition, Step

LEAST_TIME = timedelta(seconds=5)
RESEND_AFTER = timedelta(seconds=3)
BUDGET = timedelta(seconds=30)


def order_saga() -> SagaDefinition:
    return SagaDefinition(
        name="order",
        subject="order_id",
        start=c.StartOrderSaga,
        reports_to=q.ORDER_COMMANDS,
        steps=(
            Step(
                "create_order",
                participant=q.ORDER_COMMANDS,
                action=Local("order_svc creates the pending order in the transaction that starts the saga"),
                compensation=Invoke(c.CancelOrder, cancel_order, success=c.OrderCancelled),
                timeout=LEAST_TIME,
            ),
            Step(
                "reserve_inventory",
                participant=q.INVENTORY_COMMANDS,
                action=Invoke(
                    c.ReserveInventory, reserve_inventory, success=c.InventoryReserved, failure=c.InventoryReservationFailed
                ),
                compensation=Invoke(c.ReleaseInventory, by_order(c.ReleaseInventory), success=c.InventoryReleased),
                timeout=LEAST_TIME,
                resend_after=RESEND_AFTER,
            ),
            Step(
                "process_payment",
                participant=q.PAYMENT_COMMANDS,
                action=Invoke(
                    c.ProcessPayment, process_payment, success=c.PaymentProcessed, failure=c.PaymentFailed, keep=("payment_id",)
                ),
                compensation=Invoke(c.RefundPayment, refund_payment, success=c.PaymentRefunded, failure=c.PaymentRefundFailed),
                timeout=LEAST_TIME,
                resend_after=RESEND_AFTER,
                forget=("payment_token",),
            ),
            Step(
                "fulfill_order",
                participant=q.FULFILLMENT_COMMANDS,
                action=Invoke(
                    c.FulfillOrder, fulfill_order, success=c.OrderFulfilled, failure=c.FulfillmentFailed, keep=("shipment_id",)
                ),
                compensation=Invoke(
                    c.CancelShipment, cancel_shipment, success=c.ShipmentCancelled, failure=c.ShipmentCancellationFailed
                ),
                timeout=LEAST_TIME,
                resend_after=RESEND_AFTER,
                forget=("shipping_address",),
            ),
            Step(
                "send_confirmation",
                participant=q.NOTIFICATION_COMMANDS,
                # The last step: once it succeeds nothing can fail any more, and an email
                # cannot be unsent. Its compensation runs only when it timed out, so that a
                # confirmation still stuck in the queue is never sent for a cancelled order.
                action=Invoke(c.SendConfirmation, send_confirmation, success=c.ConfirmationSent, failure=c.ConfirmationFailed),
                compensation=Invoke(c.WithdrawConfirmation, by_order(c.WithdrawConfirmation), success=c.ConfirmationWithdrawn),
                timeout=LEAST_TIME,
                resend_after=RESEND_AFTER,
                forget=("customer_email",),
            ),
        ),
        on_completed=(Notify(q.ORDER_COMMANDS, by_order(c.ConfirmOrder)),),
        budget=BUDGET,
    )


# --- building each command from the saga's data -----------------------------------------
def by_order(command: type[c.Command]):
    return lambda data: command(order_id=data["order_id"])


def cancel_order(data: Data) -> c.CancelOrder:
    return c.CancelOrder(order_id=data["order_id"], reason=data.get("failure_reason") or "saga compensated")


def reserve_inventory(data: Data) -> c.ReserveInventory:
    return c.ReserveInventory(order_id=data["order_id"], items=data["items"])


def process_payment(data: Data) -> c.ProcessPayment:
    return c.ProcessPayment(
        order_id=data["order_id"], amount=data["total"], currency=data["currency"], payment_token=data["payment_token"]
    )


def refund_payment(data: Data) -> c.RefundPayment:
    return c.RefundPayment(order_id=data["order_id"], payment_id=data.get("payment_id"))


def fulfill_order(data: Data) -> c.FulfillOrder:
    return c.FulfillOrder(order_id=data["order_id"], items=data["items"], shipping_address=data["shipping_address"])


def cancel_shipment(data: Data) -> c.CancelShipment:
    return c.CancelShipment(order_id=data["order_id"], shipment_id=data.get("shipment_id"))


def send_confirmation(data: Data) -> c.SendConfirmation:
    return c.SendConfirmation(
        order_id=data["order_id"],
        customer_id=data["customer_id"],
        customer_email=data["customer_email"],
        total=data["total"],
        currency=data["currency"],
    )
