"""Order rules, with no I/O."""

from __future__ import annotations

from decimal import Decimal

PENDING, CONFIRMED, CANCELLED = "pending", "confirmed", "cancelled"


class OrderError(Exception):
    pass


def total(items: list[dict]) -> Decimal:
    return sum((Decimal(str(i["unit_price"])) * i["quantity"] for i in items), Decimal("0.00")).quantize(Decimal("0.01"))


def confirm(status: str) -> str:
    """A pending order is confirmed once its saga completed. Confirming twice is harmless."""
    if status == CANCELLED:
        raise OrderError("a cancelled order cannot be confirmed")
    return CONFIRMED


def cancel(status: str) -> str:
    """Cancelling is the saga's compensation of create_order, so it must be repeatable."""
    if status == CONFIRMED:
        raise OrderError("a confirmed order cannot be cancelled by its saga")
    return CANCELLED


def cancel_by_customer(status: str) -> str:
    """The customer's cancellation, once its shipment is stopped: only a confirmed order."""
    if status != CONFIRMED:
        raise OrderError(f"a {status} order is not cancelled by its customer")
    return CANCELLED


class CancellationRefused(Exception):
    """Why a customer's cancellation request cannot start a saga."""


def may_request_cancellation(status: str) -> None:
    """Only a confirmed order can be cancelled by its customer: a pending one is still in the
    hands of its order saga, and a cancelled one was never confirmed."""
    if status == PENDING:
        raise CancellationRefused("the order is still being placed; try again once it is confirmed")
    if status == CANCELLED:
        raise CancellationRefused("the order was cancelled when it was placed")
