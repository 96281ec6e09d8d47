"""The order saga, top to bottom: each step (its participant, command, replies and compensation
are its contract in ``contracts/steps.py``), how its commands are built, what undoes it."""

from __future__ import annotations

from contracts import messages as c
from contracts import steps as s
from contracts import topology as q

from .engine import Data, Notify, SagaDefinition
from .saga_steps import BUDGET, LEAST_TIME, RESEND_AFTER, by_order, invoke, local


def order_saga(version: int = 1) -> SagaDefinition:
    """Version 1: reserve, pay, ship, confirm. Version 2 screens the order for fraud before the
    charge (payment_svc's screen_order). Both stay registered while sagas run on them."""
    screening = (invoke(s.SCREEN_ORDER, screen_order),) if version >= 2 else ()
    return SagaDefinition(
        name="order",
        version=version,
        subject="order_id",
        start=c.StartOrderSaga,
        settles_unstarted=c.SettleUnstartedSaga,
        reports_to=q.ORDER_COMMANDS,
        steps=(
            local(
                s.CREATE_ORDER, "order_svc creates the pending order in the transaction that starts the saga", undo=cancel_order
            ),
            invoke(s.RESERVE_INVENTORY, reserve_inventory, undo=by_order(c.ReleaseInventory)),
            *screening,
            invoke(s.PROCESS_PAYMENT, process_payment, undo=refund_payment, keep=("payment_id",), forget=("payment_token",)),
            invoke(s.FULFILL_ORDER, fulfill_order, undo=cancel_shipment, keep=("shipment_id",), forget=("shipping_address",)),
            # The last step: once it succeeds nothing can fail any more, and an email cannot be
            # unsent. Its compensation runs only when it timed out, so that a confirmation still
            # stuck in the queue is never sent for a cancelled order.
            invoke(s.SEND_CONFIRMATION, send_confirmation, undo=by_order(c.WithdrawConfirmation), forget=("customer_email",)),
        ),
        on_completed=(Notify(q.ORDER_COMMANDS, by_order(c.ConfirmOrder)),),
        step_timeout=LEAST_TIME,
        resend_after=RESEND_AFTER,
        budget=BUDGET,
    )


# --- building each command from the saga's data -----------------------------------------
def cancel_order(data: Data) -> c.CancelOrder:
    return c.CancelOrder(order_id=data["order_id"], reason=data.get("failure_reason") or "saga compensated")


def reserve_inventory(data: Data) -> c.ReserveInventory:
    return c.ReserveInventory(order_id=data["order_id"], items=data["items"])


def screen_order(data: Data) -> c.ScreenOrder:
    return c.ScreenOrder(order_id=data["order_id"], total=data["total"], currency=data["currency"])


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
