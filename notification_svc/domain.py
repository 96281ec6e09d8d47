"""What the customer is told, and the sandbox's delivery rules, with no I/O."""

from __future__ import annotations

from decimal import Decimal

UNDELIVERABLE_DOMAINS = frozenset({"bounce.test"})  # sandbox: every address there bounces


class Undeliverable(Exception):
    """The address cannot receive mail: a business failure, never retried."""


def deliverable(email: str) -> bool:
    return email.rsplit("@", 1)[-1].lower() not in UNDELIVERABLE_DOMAINS


def check_deliverable(email: str) -> None:
    if not deliverable(email):
        raise Undeliverable("email address cannot receive mail")


def confirmation(order_id: str, total: Decimal, currency: str) -> tuple[str, str]:
    subject = f"Your order {order_id} is confirmed"
    body = f"Thank you for your order {order_id}. Total charged: {total} {currency}. We will ship it soon."
    return subject, body


def push_text(order_id: str) -> str:
    return f"Order {order_id} confirmed"


def cancellation(order_id: str) -> tuple[str, str]:
    subject = f"Your order {order_id} is cancelled"
    body = f"As you asked, your order {order_id} is cancelled. The full amount is refunded to your card."
    return subject, body


def cancellation_refused(order_id: str, reason: str) -> tuple[str, str]:
    subject = f"Your order {order_id} could not be cancelled"
    body = f"We could not cancel your order {order_id}: {reason}. Once it arrives you can send it back for a refund."
    return subject, body
