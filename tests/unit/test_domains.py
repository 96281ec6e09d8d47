"""Each participant's business rules, with no I/O."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fulfillment_svc import domain as shipping
from inventory_svc import domain as stock
from notification_svc import domain as notify
from order_svc import domain as orders
from payment_svc import domain as payments


def test_reservation_is_all_or_nothing_and_names_every_shortfall():
    levels = {"A": stock.Level(5, 0), "B": stock.Level(1, 0)}
    with pytest.raises(stock.ReservationRefused) as refused:
        stock.reserve(levels, {"A": 2, "B": 2, "C": 1})
    assert str(refused.value) == "B: 2 wanted, 1 available; C: unknown sku"
    assert stock.reserve(levels, {"A": 5, "B": 1}) == {"A": stock.Level(0, 5), "B": stock.Level(0, 1)}


@given(available=st.integers(0, 100), wanted=st.integers(1, 100))
def test_release_undoes_reserve(available, wanted):
    levels = {"A": stock.Level(available, 0)}
    if wanted > available:
        with pytest.raises(stock.ReservationRefused):
            stock.reserve(levels, {"A": wanted})
    else:
        assert stock.release(stock.reserve(levels, {"A": wanted}), {"A": wanted}) == levels


def test_sandbox_tokens_decide_payment_outcomes():
    payments.charge("tok_visa")
    payments.charge("tok_refundFail")
    payments.refund(payments.fingerprint("tok_visa"))
    for token in ("tok_chargeDeclined", "tok_unknown"):
        with pytest.raises(payments.PaymentDeclined):
            payments.charge(token)
    with pytest.raises(payments.RefundRejected):
        payments.refund(payments.fingerprint("tok_refundFail"))


def test_shipping_rules():
    assert shipping.schedule("US", date(2026, 1, 1), 3) == date(2026, 1, 4)
    with pytest.raises(shipping.ShipmentRefused):
        shipping.schedule("AQ", date(2026, 1, 1), 3)
    assert shipping.cancel(shipping.SCHEDULED) == shipping.CANCELLED
    with pytest.raises(shipping.ShipmentNotCancellable):
        shipping.cancel(shipping.DISPATCHED)
    assert shipping.cancel(shipping.mark_returned(shipping.dispatch(shipping.SCHEDULED))) == shipping.CANCELLED
    with pytest.raises(shipping.InvalidTransition):
        shipping.dispatch(shipping.CANCELLED)


def test_bounce_domain_is_undeliverable():
    notify.check_deliverable("ada@example.com")
    with pytest.raises(notify.Undeliverable):
        notify.check_deliverable("ada@Bounce.Test")


def test_order_total_and_status_rules():
    assert orders.total([{"unit_price": "12.50", "quantity": 2}, {"unit_price": "0.01", "quantity": 3}]) == Decimal("25.03")
    assert orders.cancel(orders.PENDING) == orders.CANCELLED
    assert orders.confirm(orders.PENDING) == orders.CONFIRMED
    with pytest.raises(orders.OrderError):
        orders.cancel(orders.CONFIRMED)
    with pytest.raises(orders.OrderError):
        orders.confirm(orders.CANCELLED)
