"""The customer's cancellation of a confirmed order, top to bottom.

``cancel_scheduled_shipment`` is the pivot: until the parcel is stopped the cancellation can still be
refused (it has left the warehouse), and nothing else has changed. After it the order will
be cancelled whatever happens: every later step is retried within the saga's budget, never
undone, and one that still fails goes to a person while the others are still done.
"""

from __future__ import annotations

from contracts import messages as c
from contracts import steps as s
from contracts import topology as q

from .engine import Data, Notify, SagaDefinition
from .saga_steps import BUDGET, LEAST_TIME, RESEND_AFTER, by_order, invoke

CUSTOMER_REASON = "cancelled by customer"


def cancellation_saga() -> SagaDefinition:
    return SagaDefinition(
        name="order_cancellation",
        subject="order_id",
        start=c.StartOrderCancellation,
        reports_to=q.ORDER_COMMANDS,
        pivot=s.CANCEL_SCHEDULED_SHIPMENT.name,
        steps=(
            # Undone only if it timed out: the order then stays confirmed, so a late
            # cancellation must not leave its parcel stopped.
            invoke(s.CANCEL_SCHEDULED_SHIPMENT, by_order(c.CancelScheduledShipment), undo=by_order(c.ReinstateShipment)),
            invoke(s.REFUND_CHARGE, by_order(c.RefundCharge)),
            invoke(s.RETURN_RESERVED_STOCK, by_order(c.ReturnReservedStock)),
            invoke(s.CANCEL_CONFIRMED_ORDER, cancel_confirmed_order),
            invoke(s.SEND_CANCELLATION_NOTICE, send_cancellation_notice),
        ),
        on_compensated=(Notify(q.NOTIFICATION_COMMANDS, send_cancellation_refusal),),
        # The address is kept until the saga ends: the refusal notice needs it too.
        forget_when_done=("customer_email",),
        step_timeout=LEAST_TIME,
        resend_after=RESEND_AFTER,
        budget=BUDGET,
    )


def cancel_confirmed_order(data: Data) -> c.CancelConfirmedOrder:
    return c.CancelConfirmedOrder(order_id=data["order_id"], reason=CUSTOMER_REASON)


def send_cancellation_notice(data: Data) -> c.SendCancellationNotice:
    return c.SendCancellationNotice(
        order_id=data["order_id"], customer_id=data["customer_id"], customer_email=data["customer_email"]
    )


def send_cancellation_refusal(data: Data) -> c.SendCancellationRefusal:
    return c.SendCancellationRefusal(
        order_id=data["order_id"],
        customer_id=data["customer_id"],
        customer_email=data.get("customer_email"),
        reason=data.get("failure_reason") or "the order could not be cancelled",
    )
