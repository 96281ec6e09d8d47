"""Running unattended: participants down, orchestrator killed, escalations and the operator's tools."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from contracts import messages as c
from messaging.envelope import Envelope
from tests.conftest import eventually
from tests.e2e.conftest import bodies, sagactl

pytestmark = pytest.mark.e2e
TOKEN = "test-operator-token"
FINAL = ("completed", "compensated", "needs_intervention")


def operator(shop, method: str, path: str, **kwargs):
    return shop.http.request(method, shop.url("orchestrator", path), headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)


def escalations_for(shop, saga_id: str) -> list[dict]:
    letters = operator(shop, "GET", "/operator/dead-letters").json()
    return [d for d in letters if d["queue"] == "saga-escalations" and d["saga_id"] == saga_id]


def step_status(shop, saga_id: str, step: str) -> str | None:
    saga = shop.saga(saga_id)
    return next(s["status"] for s in saga["steps"] if s["name"] == step) if saga else None


# The id of no saga, the same in every process (pytest -n collects the parameters in each worker).
NOBODY = uuid.uuid5(uuid.NAMESPACE_URL, "test-operations/no-saga")


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/operator/sagas"),
        ("GET", f"/operator/sagas/{NOBODY}"),
        ("GET", "/operator/dead-letters"),
        ("POST", "/operator/dead-letters/inventory-commands-dlq/redrive"),
        ("POST", f"/operator/sagas/{NOBODY}/steps/process_payment/retry-compensation"),
        ("POST", f"/operator/sagas/{NOBODY}/resolve"),
    ],
)
def test_operator_endpoints_refuse_requests_without_the_token(shop, method, path):
    url = shop.url("orchestrator", path)
    body = {"reason": "checked by hand"}
    assert shop.http.request(method, url, json=body).status_code == 401
    assert shop.http.request(method, url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert operator(shop, method, path, json=body).status_code != 401


def test_a_stopped_participant_leads_to_a_compensated_saga_and_no_late_shipment(stack, shop):
    sku = shop.new_sku(10)
    stack.stop_service("fulfillment_svc")
    try:
        placed = shop.place(shop.order_body(sku))
        # The earlier steps are undone meanwhile: the order is cancelled, stock and money back.
        eventually(lambda: shop.order(placed["order_id"])["status"] == "cancelled", timeout=45, what="order cancelled")
        eventually(lambda: Decimal(shop.payments(placed["order_id"])["refunded"]) == Decimal("25.00"), what="the charge refunded")
        saga = shop.saga(placed["saga_id"])
        # ... but the saga is not final while the shipment's cancellation is unacknowledged.
        assert saga["status"] == "compensating" and saga["failed_step"] == "fulfill_order"
        assert step_status(shop, placed["saga_id"], "fulfill_order") == "compensating"
        assert "timed out" in saga["failure_reason"]
        timed_out = next(h for h in saga["history"] if h["event"] == "step_timed_out")
        assert timed_out["step"] == "fulfill_order"
        assert shop.stock(sku)["available"] == 10
    finally:
        stack.start_service("fulfillment_svc")
    # The old FulfillOrder is still in the queue, next to the CancelShipment.
    eventually(
        lambda: step_status(shop, placed["saga_id"], "fulfill_order") == "compensated",
        timeout=30,
        what="the returning participant acknowledges the compensation",
    )
    assert [s for s in shop.shipments(placed["order_id"]) if s["status"] in ("scheduled", "dispatched")] == []
    assert shop.saga(placed["saga_id"])["status"] == "compensated"


@pytest.mark.parametrize("repair", ["redrive", "retry"])
def test_dispatched_shipment_needs_intervention_until_returned_then_a_redrive_or_retry_compensates(stack, shop, repair):
    sku = shop.new_sku(10)
    stack.stop_service("notification_svc")
    notification_down = True
    try:
        placed = shop.place(shop.order_body(sku))
        eventually(lambda: step_status(shop, placed["saga_id"], "fulfill_order") == "succeeded", what="shipment made")
        [shipment] = shop.shipments(placed["order_id"])
        dispatch = shop.url("fulfillment_svc", f"/shipments/{shipment['shipment_id']}/dispatch")
        assert shop.operator.post(dispatch).status_code == 200

        # send_confirmation times out (30 s budget), the parcel has left: its cancellation fails.
        eventually(
            lambda: step_status(shop, placed["saga_id"], "fulfill_order") == "compensation_failed",
            timeout=45,
            what="the shipment's cancellation refused",
        )
        # Not final yet: the confirmation's withdrawal waits for notification_svc to acknowledge it.
        assert shop.saga(placed["saga_id"])["status"] == "compensating"
        stack.start_service("notification_svc")
        notification_down = False
        order, saga = shop.settled(placed, timeout=45)
        assert saga["status"] == "needs_intervention"
        steps = {s["name"]: s["status"] for s in saga["steps"]}
        assert steps["fulfill_order"] == "compensation_failed"
        assert steps["process_payment"] == steps["reserve_inventory"] == steps["create_order"] == "compensated"
        [letter] = eventually(lambda: escalations_for(shop, placed["saga_id"]), what="one escalation")
        assert letter["step"] == "fulfill_order" and "dispatched" in letter["detail"]
        assert f"{placed['saga_id']}" in sagactl(stack, "dead-letters")

        # The cause is fixed: the parcel came back. A redrive or a retry carries the saga to compensated.
        assert shop.operator.post(shop.url("fulfillment_svc", f"/shipments/{shipment['shipment_id']}/return")).status_code == 200
        if repair == "redrive":
            assert "compensation retried" in sagactl(stack, "redrive", "saga-escalations")
        else:
            assert "compensating" in sagactl(stack, "retry", placed["saga_id"], "fulfill_order")
        eventually(lambda: shop.saga(placed["saga_id"])["status"] == "compensated", what="compensated after redrive")
        assert escalations_for(shop, placed["saga_id"]) == []
        assert [s["status"] for s in shop.shipments(placed["order_id"])] == ["cancelled"]
        history = [h["event"] for h in shop.saga(placed["saga_id"])["history"]]
        assert "operator_retry_compensation" in history
        assert placed["saga_id"] in sagactl(stack, "list", "--status", "compensated", "--limit", "500")
    finally:
        if notification_down:
            stack.start_service("notification_svc")
    eventually(
        lambda: step_status(shop, placed["saga_id"], "send_confirmation") == "compensated",
        what="the withdrawn confirmation acknowledged",
    )


def test_refund_that_never_succeeds_is_resolved_by_hand_with_an_audit_trail(stack, shop):
    sku = shop.new_sku(10)
    placed = shop.place(shop.refund_failure_body(sku))
    order, saga = shop.settled(placed)
    assert saga["status"] == "needs_intervention"
    eventually(lambda: escalations_for(shop, placed["saga_id"]), what="escalation listed")

    retried = operator(
        shop, "POST", f"/operator/sagas/{placed['saga_id']}/steps/process_payment/retry-compensation", json={"actor": "ops"}
    )
    assert retried.status_code == 200
    eventually(
        lambda: shop.saga(placed["saga_id"])["status"] == "needs_intervention" and escalations_for(shop, placed["saga_id"]),
        what="refused again, escalated again",
    )

    # A redrive retries each escalation once and returns, though this refund fails every time.
    redriven = operator(shop, "POST", "/operator/dead-letters/saga-escalations/redrive", timeout=60).json()
    assert [s["saga_id"] for s in redriven["sagas"]].count(placed["saga_id"]) == 1
    eventually(
        lambda: shop.saga(placed["saga_id"])["status"] == "needs_intervention" and escalations_for(shop, placed["saga_id"]),
        what="refused and escalated once more",
    )
    retries = [h for h in shop.saga(placed["saga_id"])["history"] if h["event"] == "operator_retry_compensation"]
    assert len(retries) == 2

    out = sagactl(stack, "resolve", placed["saga_id"], "--reason", "refunded by bank transfer")
    assert "compensated" in out
    saga = shop.saga(placed["saga_id"])
    assert saga["status"] == "compensated"
    resolved = [h for h in saga["history"] if h["event"] == "operator_resolved"]
    assert resolved and "by bootstrap: refunded by bank transfer" in resolved[0]["detail"]
    assert escalations_for(shop, placed["saga_id"]) == []
    shown = sagactl(stack, "show", placed["saga_id"])
    assert "operator_resolved" in shown and "compensation_failed" in shown


def test_a_dead_lettered_command_is_redriven_and_processed(stack, shop):
    sku = shop.new_sku(10)
    sqs = stack.client("sqs")
    replies = f"test-replies-{uuid.uuid4().hex[:8]}"
    replies_url = sqs.create_queue(QueueName=f"{stack.prefix}-{replies}")["QueueUrl"]
    envelope = Envelope.wrap(
        c.ReserveInventory(order_id=uuid.uuid4(), items=[{"sku": sku, "quantity": 1, "unit_price": "1.00"}]),
        sender="orchestrator",  # the one sender inventory-commands takes
        saga_id=uuid.uuid4(),
        reply_to=replies,
    )
    # As if it had been dead-lettered while the database was down.
    sqs.send_message(QueueUrl=stack.queue_url("inventory-commands-dlq"), MessageBody=envelope.model_dump_json())

    assert "inventory-commands-dlq" in sagactl(stack, "redrive", "inventory-commands-dlq")
    [reply] = eventually(lambda: bodies(shop.drain(replies_url)), what="reply to the redriven command")
    assert reply["message_type"] == "InventoryReserved" and reply["causation_id"] == str(envelope.message_id)
    assert shop.stock(sku)["available"] == 9
