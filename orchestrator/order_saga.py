"""The order saga, top to bottom: each step, who does it, what undoes it."""
from __future__ import annotations

from datetime import timedelta

from messaging import contracts as c
from messaging import topology as q

from .engine import Invoke, Notify, SagaDefinition, Step
from .settings import StepTimeouts


def order_saga(timeouts: StepTimeouts | None = None) -> SagaDefinition:
    t = timeouts or StepTimeouts()
    resend = timedelta(seconds=t.resend_after)
    return SagaDefinition(
        name="order",
        steps=(
            Step(
                "create_order", participant=q.ORDER_COMMANDS,
                action=None,  # order_svc creates the pending order in the transaction that starts the saga
                compensation=Invoke(c.CancelOrder, cancel_order, success=c.OrderCancelled),
                timeout=timedelta(seconds=t.create_order),
            ),
            Step(
                "reserve_inventory", participant=q.INVENTORY_COMMANDS,
                action=Invoke(c.ReserveInventory, reserve_inventory,
                              success=c.InventoryReserved, failure=c.InventoryReservationFailed),
                compensation=Invoke(c.ReleaseInventory, by_order(c.ReleaseInventory), success=c.InventoryReleased),
                timeout=timedelta(seconds=t.reserve_inventory),
                resend_after=resend,
            ),
            Step(
                "process_payment", participant=q.PAYMENT_COMMANDS,
                action=Invoke(c.ProcessPayment, process_payment, success=c.PaymentProcessed, failure=c.PaymentFailed),
                compensation=Invoke(c.RefundPayment, by_order(c.RefundPayment),
                                    success=c.PaymentRefunded, failure=c.PaymentRefundFailed),
                timeout=timedelta(seconds=t.process_payment),
                resend_after=resend,
                forget=("payment_token",),
            ),
            Step(
                "fulfill_order", participant=q.FULFILLMENT_COMMANDS,
                action=Invoke(c.FulfillOrder, fulfill_order, success=c.OrderFulfilled, failure=c.FulfillmentFailed),
                compensation=Invoke(c.CancelShipment, by_order(c.CancelShipment),
                                    success=c.ShipmentCancelled, failure=c.ShipmentCancellationFailed),
                timeout=timedelta(seconds=t.fulfill_order),
                resend_after=resend,
            ),
            Step(
                "send_confirmation", participant=q.NOTIFICATION_COMMANDS,
                # The last step: once it succeeds nothing can fail any more, and an email
                # cannot be unsent. Its compensation runs only when it timed out, so that a
                # confirmation still stuck in the queue is never sent for a cancelled order.
                action=Invoke(c.SendConfirmation, send_confirmation,
                              success=c.ConfirmationSent, failure=c.ConfirmationFailed),
                compensation=Invoke(c.WithdrawConfirmation, by_order(c.WithdrawConfirmation),
                                    success=c.ConfirmationWithdrawn),
                timeout=timedelta(seconds=t.send_confirmation),
                resend_after=resend,
                forget=("customer_email",),
            ),
        ),
        on_completed=(Notify(q.ORDER_COMMANDS, by_order(c.ConfirmOrder)),),
        max_compensation_attempts=t.max_compensation_attempts,
        budget=timedelta(seconds=t.saga_budget),
    )


# --- building each command from the saga's data -----------------------------------------
def by_order(command):
    return lambda data: command(order_id=data["order_id"])


def cancel_order(data: dict) -> c.CancelOrder:
    return c.CancelOrder(order_id=data["order_id"], reason=data.get("failure_reason") or "saga compensated")


def reserve_inventory(data: dict) -> c.ReserveInventory:
    return c.ReserveInventory(order_id=data["order_id"], items=data["items"])


def process_payment(data: dict) -> c.ProcessPayment:
    return c.ProcessPayment(order_id=data["order_id"], amount=data["total"], currency=data["currency"],
                            payment_token=data["payment_token"])


def fulfill_order(data: dict) -> c.FulfillOrder:
    return c.FulfillOrder(order_id=data["order_id"], items=data["items"], shipping_address=data["shipping_address"])


def send_confirmation(data: dict) -> c.SendConfirmation:
    return c.SendConfirmation(order_id=data["order_id"], customer_id=data["customer_id"],
                              customer_email=data["customer_email"], total=data["total"], currency=data["currency"])
