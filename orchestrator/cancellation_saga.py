"""The customer's cancellation of a confirmed order, top to bottom.

``cancel_shipment`` is the pivot: until the parcel is stopped the cancellation can still be
refused (it has left the warehouse), and nothing else has changed. After it the order will
be cancelled whatever happens: every later step is retried within the saga's budget, never
undone, and one that still fails goes to a person while the others are still done.
"""

from __future__ import annotations

from contracts import messages as c
from contracts import topology as q

from .engine import Data, Invoke, Notify, SagaDefinition, Step
from .order_saga import BUDGET, LEAST_TIME, RESEND_AFTER, by_order

CUSTOMER_REASON = "cancelled by customer"


def cancellation_saga() -> SagaDefinition:
    return SagaDefinition(
        name="order_cancellation",
        subject="order_id",
        start=c.StartOrderCancellation,
        reports_to=q.ORDER_COMMANDS,
        pivot="cancel_shipment",
        steps=(
            Step(
                "cancel_shipment",
                participant=q.FULFILLMENT_COMMANDS,
                action=Invoke(
                    c.CancelScheduledShipment,
                    by_order(c.CancelScheduledShipment),
                    success=c.ScheduledShipmentCancelled,
                    failure=c.ShipmentAlreadyDispatched,
                ),
                # Sent only if the cancellation timed out: the order then stays confirmed, so
                # a late cancellation must not leave its parcel stopped.
                compensation=Invoke(c.ReinstateShipment, by_order(c.ReinstateShipment), success=c.ShipmentReinstated),
                timeout=LEAST_TIME,
                resend_after=RESEND_AFTER,
            ),
            Step(
                "refund_payment",
                participant=q.PAYMENT_COMMANDS,
                action=Invoke(c.RefundCharge, by_order(c.RefundCharge), success=c.ChargeRefunded, failure=c.ChargeRefundFailed),
                timeout=LEAST_TIME,
                resend_after=RESEND_AFTER,
            ),
            Step(
                "release_inventory",
                participant=q.INVENTORY_COMMANDS,
                action=Invoke(c.ReturnReservedStock, by_order(c.ReturnReservedStock), success=c.ReservedStockReturned),
                timeout=LEAST_TIME,
                resend_after=RESEND_AFTER,
            ),
            Step(
                "cancel_order",
                participant=q.ORDER_COMMANDS,
                action=Invoke(
                    c.CancelConfirmedOrder, cancel_order, success=c.ConfirmedOrderCancelled, failure=c.CancelConfirmedOrderRefused
                ),
                timeout=LEAST_TIME,
                resend_after=RESEND_AFTER,
            ),
            Step(
                "send_cancellation_notice",
                participant=q.NOTIFICATION_COMMANDS,
                action=Invoke(
                    c.SendCancellationNotice,
                    send_cancellation_notice,
                    success=c.CancellationNoticeSent,
                    failure=c.CancellationNoticeFailed,
                ),
                timeout=LEAST_TIME,
                resend_after=RESEND_AFTER,
            ),
        ),
        on_compensated=(Notify(q.NOTIFICATION_COMMANDS, send_cancellation_refusal),),
        # The address is kept until the saga ends: the refusal notice needs it too.
        forget_when_done=("customer_email",),
        budget=BUDGET,
    )


def cancel_order(data: Data) -> c.CancelConfirmedOrder:
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
