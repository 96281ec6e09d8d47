"""What the services write to their logs: JSON lines with saga ids, and no tokens or addresses."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e
SERVICES = ("order_svc", "orchestrator", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc")


def test_logs_are_json_with_saga_ids_and_carry_no_payment_tokens_or_email_addresses(stack, shop):
    sku = shop.new_sku(10)
    secret_email = "grace.hopper.secret@example.com"
    placed = [
        shop.place(shop.order_body(sku, quantity=1, customer_email=secret_email)),
        shop.place(shop.order_body(sku, quantity=1, customer_email="grace@bounce.test")),
        shop.place(shop.refund_failure_body(sku)),
    ]
    for order in placed:
        shop.settled(order)
    for module in SERVICES:
        text = (stack.workdir / f"{module}.log").read_text()
        for secret in ("tok_visa", "tok_refundFail", "tok_chargeDeclined", secret_email, "grace@bounce.test"):
            assert secret not in text, f"{secret} in {module}.log"
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
        assert all("service" in line or "logger" in line for line in lines)
    orchestrator = [json.loads(line) for line in (stack.workdir / "orchestrator.log").read_text().splitlines()]
    mine = [line for line in orchestrator if line.get("saga_id") == placed[0]["saga_id"]]
    assert {"message_handled", "command_staged"} <= {line["event"] for line in mine}
    assert all(line.get("order_id") == placed[0]["order_id"] for line in mine if line["event"] == "message_handled")
