"""The order saga over HTTP: the happy path and every sandbox failure, with the books checked."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import eventually
from tests.e2e.conftest import bodies

pytestmark = pytest.mark.e2e


def test_happy_path_confirms_the_order_and_every_participant_did_its_part(shop, order_events):
    sku = shop.new_sku(10)
    placed = shop.place(shop.order_body(sku, quantity=3))
    assert placed["status"] == "pending"

    order, saga = shop.settled(placed)

    assert saga["status"] == "completed" and saga["failed_step"] is None
    assert [(s["name"], s["status"]) for s in saga["steps"]] == [
        ("create_order", "succeeded"),
        ("reserve_inventory", "succeeded"),
        ("process_payment", "succeeded"),
        ("fulfill_order", "succeeded"),
        ("send_confirmation", "succeeded"),
    ]
    assert order["total"] == "37.50" and order["cancel_reason"] is None
    assert shop.stock(sku) == {"sku": sku, "available": 7, "reserved": 3}
    payments = shop.payments(placed["order_id"])
    assert Decimal(payments["charged"]) == Decimal("37.50") and Decimal(payments["refunded"]) == 0
    [shipment] = shop.shipments(placed["order_id"])
    assert shipment["status"] == "scheduled"
    sent = eventually(
        lambda: (n := shop.notifications(placed["order_id"])) and all(x["status"] == "sent" for x in n) and n,
        what="email handed to SES",
    )
    assert sorted(n["channel"] for n in sent) == ["email", "push"]
    assert all(n["provider_message_id"] for n in sent if n["channel"] == "email")
    events = eventually(
        lambda: [b for b in bodies(shop.drain(order_events)) if b["payload"]["order_id"] == placed["order_id"]],
        what="OrderConfirmedEvent on the order-events topic",
    )
    assert [e["message_type"] for e in events] == ["OrderConfirmedEvent"]
    assert events[0]["saga_id"] == placed["saga_id"]


def test_every_service_exposes_saga_and_outbox_metrics(shop):
    placed = shop.place(shop.order_body(shop.new_sku(5), quantity=1))
    shop.settled(placed)
    orchestrator = shop.http.get(shop.url("orchestrator", "/metrics")).text
    for name in (
        'sagas_total{event="started"}',
        'sagas_total{event="completed"}',
        "saga_step_latency_seconds_bucket",
        'outbox_backlog{service="orchestrator"}',
        'outbox_oldest_unpublished_age_seconds{service="orchestrator"}',
    ):
        assert name in orchestrator, name
    for module in ("order_svc", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc"):
        assert "outbox_backlog{" in shop.http.get(shop.url(module, "/metrics")).text, module


@pytest.mark.parametrize(
    "trigger, overrides, failed_step, reason",
    [
        ("more than available", {"quantity": 11}, "reserve_inventory", "11 wanted, 10 available"),
        ("unknown sku", {"sku": "SKU-DOES-NOT-EXIST"}, "reserve_inventory", "unknown sku"),
        ("tok_chargeDeclined", {"payment_token": "tok_chargeDeclined"}, "process_payment", "card declined"),
        ("country AQ", {"country": "AQ"}, "fulfill_order", "no delivery to AQ"),
        ("bounce.test", {"customer_email": "ada@bounce.test"}, "send_confirmation", "cannot receive mail"),
    ],
)
def test_each_sandbox_failure_compensates_in_reverse_and_balances_the_books(shop, trigger, overrides, failed_step, reason):
    sku = shop.new_sku(10)
    body = shop.order_body(overrides.get("sku", sku), quantity=overrides.get("quantity", 2))
    if "payment_token" in overrides:
        body["payment_token"] = overrides["payment_token"]
    if "country" in overrides:
        body["shipping_address"]["country"] = overrides["country"]
    if "customer_email" in overrides:
        body["customer_email"] = overrides["customer_email"]
    placed = shop.place(body)

    order, saga = shop.settled(placed)

    assert saga["status"] == "compensated", saga
    assert saga["failed_step"] == failed_step and reason in saga["failure_reason"]
    assert order["status"] == "cancelled" and reason in order["cancel_reason"]
    names = [s["name"] for s in saga["steps"]]
    failed_at = names.index(failed_step)
    assert saga["steps"][failed_at]["status"] == "failed"
    assert all(s["status"] == "compensated" for s in saga["steps"][:failed_at])
    assert all(s["status"] == "pending" for s in saga["steps"][failed_at + 1 :])
    # compensations ran in reverse order, each after the previous one's acknowledgement
    compensated = [h["step"] for h in saga["history"] if h["event"] == "step_compensated"]
    assert compensated == list(reversed(names[:failed_at]))
    shop.assert_books_balanced(placed["order_id"], sku, 10)


def test_a_refusal_with_a_long_reason_is_still_a_business_failure(shop):
    skus = [f"SKU-{i}-" + "X" * 58 for i in range(8)]  # eight unknown 64-character SKUs
    body = shop.order_body("SKU-1")
    body["items"] = [{"sku": sku, "quantity": 1, "unit_price": "1.00"} for sku in skus]
    order, saga = shop.settled(shop.place(body))
    assert saga["status"] == "compensated" and saga["failed_step"] == "reserve_inventory"
    assert saga["steps"][1]["status"] == "failed"  # refused at once, not timed out
    assert len(saga["failure_reason"]) == 500 and saga["failure_reason"].endswith("...")


def test_refund_failure_escalates_once_and_still_undoes_the_other_steps(shop, stack):
    escalations = stack.queue_url("saga-escalations")
    sku = shop.new_sku(10)
    placed = shop.place(shop.refund_failure_body(sku))

    order, saga = shop.settled(placed)

    assert saga["status"] == "needs_intervention"
    steps = {s["name"]: s["status"] for s in saga["steps"]}
    assert steps == {
        "create_order": "compensated",
        "reserve_inventory": "compensated",
        "process_payment": "compensation_failed",
        "fulfill_order": "failed",
        "send_confirmation": "pending",
    }
    assert shop.stock(sku)["available"] == 10 and order["status"] == "cancelled"
    mine = [b for b in bodies(shop.drain(escalations)) if b["saga_id"] == placed["saga_id"]]
    assert len(mine) == 1
    assert mine[0]["payload"]["step"] == "process_payment"
    assert mine[0]["payload"]["command"]["type"] == "RefundPayment"
    assert "refund rejected" in mine[0]["payload"]["last_error"] and mine[0]["payload"]["attempts"] == 1
