"""The orchestrator killed (``kill -9``) mid-flight, while waiting on a deadline and while
compensating: after its restart every saga finishes from the state in its database. A file of
its own beside test_operations.py, so that ``make test``'s processes run the two side by side."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.conftest import eventually
from tests.e2e.test_operations import step_status

pytestmark = pytest.mark.e2e


def test_orchestrator_killed_mid_flight_finishes_every_saga_after_restart(stack, shop):
    sku = shop.new_sku(100)
    kinds = [
        ({}, "completed"),
        ({"payment_token": "tok_chargeDeclined"}, "compensated"),
        ({"customer_email": "x@bounce.test"}, "compensated"),
    ]
    placed = []
    for round_ in range(3):
        for changes, expected in kinds:
            placed.append((shop.place(shop.order_body(sku, quantity=1, **changes)), expected))
        time.sleep(0.2 * round_)
        stack.stop_service("orchestrator", kill=True)  # kill -9, in whatever phase each saga is
        stack.start_service("orchestrator")
    for order, expected in placed:
        saga = shop.settled(order, timeout=60)[1]
        # A reply taken by the killed process stays invisible for a while, but deadlines wait
        # until the restarted orchestrator has read it: no healthy order is cancelled.
        assert saga["status"] == expected, (saga["failed_step"], saga["failure_reason"])
    completed = sum(expected == "completed" for _, expected in placed)
    assert shop.stock(sku) == {"sku": sku, "available": 100 - completed, "reserved": completed}


def test_orchestrator_killed_while_waiting_on_a_deadline_fires_it_after_restart(stack, shop):
    sku = shop.new_sku(10)
    stack.stop_service("payment_svc")
    try:
        placed = shop.place(shop.order_body(sku))
        eventually(
            lambda: step_status(shop, placed["saga_id"], "process_payment") == "running", what="waiting on the payment deadline"
        )
        stack.stop_service("orchestrator", kill=True)
        time.sleep(6)  # the deadline passes while no orchestrator runs
        stack.start_service("orchestrator")
        eventually(lambda: shop.order(placed["order_id"])["status"] == "cancelled", timeout=45, what="order cancelled")
        saga = shop.saga(placed["saga_id"])
        # Not final while the refund sent to the stopped payment_svc is unacknowledged.
        assert saga["status"] == "compensating" and saga["failed_step"] == "process_payment"
        assert shop.stock(sku)["available"] == 10
    finally:
        stack.start_service("payment_svc")
    order, saga = shop.settled(placed, timeout=45)
    assert saga["status"] == "compensated"
    eventually(
        lambda: step_status(shop, placed["saga_id"], "process_payment") == "compensated",
        timeout=30,
        what="payment service acknowledges the refund-of-nothing",
    )
    payments = shop.payments(placed["order_id"])
    assert Decimal(payments["charged"]) == Decimal(payments["refunded"])


def test_orchestrator_killed_while_compensating_finishes_the_compensation_after_restart(stack, shop):
    sku = shop.new_sku(10)
    stack.stop_service("notification_svc")  # send_confirmation will time out
    try:
        placed = shop.place(shop.order_body(sku))
        eventually(lambda: step_status(shop, placed["saga_id"], "fulfill_order") == "succeeded", what="shipment made")
        stack.stop_service("payment_svc")  # the refund will wait in its queue
        eventually(
            lambda: step_status(shop, placed["saga_id"], "process_payment") == "compensating",
            timeout=40,
            what="waiting on the refund",
        )
        assert shop.saga(placed["saga_id"])["status"] == "compensating"
        stack.stop_service("orchestrator", kill=True)
        stack.start_service("orchestrator")
        stack.start_service("payment_svc")
        stack.start_service("notification_svc")  # the confirmation's withdrawal, too, is acknowledged
        order, saga = shop.settled(placed, timeout=60)
        assert saga["status"] == "compensated"
        undone = [h["step"] for h in saga["history"] if h["event"] == "step_compensated"]
        # In reverse order (the confirmation's withdrawal, acknowledged whenever its service is back, aside).
        assert [s for s in undone if s != "send_confirmation"][-3:] == ["process_payment", "reserve_inventory", "create_order"]
        payments = shop.payments(placed["order_id"])
        assert Decimal(payments["charged"]) == Decimal(payments["refunded"]) == Decimal("25.00")
        assert shop.stock(sku)["available"] == 10
        assert [s["status"] for s in shop.shipments(placed["order_id"])] == ["cancelled"]
    finally:
        if "payment_svc" not in stack.processes:
            stack.start_service("payment_svc")
        if "notification_svc" not in stack.processes:
            stack.start_service("notification_svc")
