"""Shipping rules, with no I/O."""

from __future__ import annotations

from datetime import date, timedelta

SCHEDULED, DISPATCHED, RETURNED, CANCELLED = "scheduled", "dispatched", "returned", "cancelled"
ACTIVE = (SCHEDULED, DISPATCHED)
UNDELIVERABLE_COUNTRIES = frozenset({"AQ"})  # sandbox: Antarctica has no carrier


class ShipmentRefused(Exception):
    """A business refusal: nowhere to deliver. Never retried."""


class ShipmentNotCancellable(Exception):
    """The parcel has left the warehouse; only its return makes the order undoable."""


class InvalidTransition(Exception):
    pass


def schedule(country: str, today: date, delivery_days: int) -> date:
    if country in UNDELIVERABLE_COUNTRIES:
        raise ShipmentRefused(f"no delivery to {country}")
    return today + timedelta(days=delivery_days)


def cancel(status: str) -> str:
    if status == DISPATCHED:
        raise ShipmentNotCancellable("shipment already dispatched")
    return CANCELLED


def reinstate(status: str) -> str:
    """Undo of a cancellation the customer asked for but whose saga gave up on it."""
    return SCHEDULED if status == CANCELLED else status


def dispatch(status: str) -> str:
    if status != SCHEDULED:
        raise InvalidTransition(f"a {status} shipment cannot be dispatched")
    return DISPATCHED


def mark_returned(status: str) -> str:
    if status != DISPATCHED:
        raise InvalidTransition(f"a {status} shipment cannot be returned")
    return RETURNED
