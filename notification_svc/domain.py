"""What the customer is told, and the sandbox's delivery rules, with no I/O."""
from __future__ import annotations

from decimal import Decimal

UNDELIVERABLE_DOMAINS = frozenset({"bounce.test"})  # sandbox: every address there bounces


class Undeliverable(Exception):
    """The address cannot receive mail: a business failure, never retried."""


def check_deliverable(email: str) -> None:
    if email.rsplit("@", 1)[-1].lower() in UNDELIVERABLE_DOMAINS:
        raise Undeliverable("email address cannot receive mail")


def confirmation(order_id: str, total: Decimal, currency: str) -> tuple[str, str]:
    subject = f"Your order {order_id} is confirmed"
    body = f"Thank you for your order {order_id}. Total charged: {total} {currency}. We will ship it soon."
    return subject, body


def push_text(order_id: str) -> str:
    return f"Order {order_id} confirmed"
