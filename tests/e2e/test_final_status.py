"""Final means final: with payment_svc down past ``process_payment``'s budget, the saga
compensates the earlier steps (the order is cancelled, its customer told) but never reports
``compensated`` while the refund it sent is unacknowledged. Once payment_svc is back and
acknowledges it, the saga ends ``compensated``, once, with one final transition in its history."""

from __future__ import annotations

import time

from tests.conftest import eventually


def test_a_saga_is_compensated_only_once_every_compensation_is_acknowledged(stack, shop):
    seen: list[str] = []
    with stack.restarted_with(
        "orchestrator", ORCHESTRATOR_TIMEOUTS__SAGA_BUDGET="10", ORCHESTRATOR_TIMEOUTS__PROCESS_PAYMENT="3"
    ):
        stack.stop_service("payment_svc")
        try:
            sku = shop.new_sku(available=5)
            placed = shop.place(shop.order_body(sku, 1))

            def order_cancelled() -> bool:
                seen.append((shop.saga(placed["saga_id"]) or {"status": "not started"})["status"])
                return shop.order(placed["order_id"])["status"] == "cancelled"

            eventually(order_cancelled, timeout=40, interval=0.2, what="the order cancelled while payment_svc is down")
            # The order's status is not the saga's: the customer is told, the refund is not acknowledged.
            until = time.monotonic() + 3
            while time.monotonic() < until:
                saga = shop.saga(placed["saga_id"])
                seen.append(saga["status"])
                steps = {s["name"]: s["status"] for s in saga["steps"]}
                assert steps["process_payment"] == "compensating", steps
                time.sleep(0.2)
        finally:
            stack.start_service("payment_svc")
        saga = eventually(
            lambda: (s := shop.saga(placed["saga_id"])) and s["status"] == "compensated" and s,
            timeout=40,
            what="the saga compensated once the refund is acknowledged",
        )
    assert "compensated" not in seen, "compensated while a compensation was unacknowledged"
    assert {s["name"]: s["status"] for s in saga["steps"]}["process_payment"] == "compensated"
    finals = [
        h["event"] for h in saga["history"] if h["event"] in ("saga_compensated", "saga_completed", "saga_needs_intervention")
    ]
    assert finals == ["saga_compensated"]
    time.sleep(2)
    assert shop.saga(placed["saga_id"])["status"] == "compensated"
    shop.assert_books_balanced(placed["order_id"], sku, 5)
