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
