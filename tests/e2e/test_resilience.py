"""Restarts and slow dependencies cost time, never a healthy order."""

from __future__ import annotations

import time
from decimal import Decimal
from urllib.parse import urlparse

import pytest

from stack.faults import BLACK_HOLE, FaultyEndpoint
from tests.conftest import eventually
from tests.e2e.conftest import Shop, _stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def black_holed_push(tmp_path_factory, postgres_server):
    """A system whose notification_svc reaches SNS through an endpoint that never answers."""
    stack = _stack(tmp_path_factory.mktemp("black-hole"), postgres_server)
    if stack.endpoint is None:  # the stack starts its own moto server: start it first to know its port
        stack.start()
        stack.stop_service("notification_svc")
    target = urlparse(stack.endpoint or "")
    hole = FaultyEndpoint(target.hostname, target.port, mode=BLACK_HOLE)
    stack.service_env["notification_svc"] = {"AWS_ENDPOINT_URL_SNS": hole.url}
    try:
        if stack.processes:
            stack.start_service("notification_svc")
        else:
            stack.start()
        yield Shop(stack)
    finally:
        stack.stop()
        hole.close()


def test_a_black_holed_topic_delays_no_reply_and_cancels_no_order(black_holed_push):
    shop = black_holed_push
    sku = shop.new_sku(5)
    started = time.monotonic()
    placed = shop.place(shop.order_body(sku))
    order, saga = shop.settled(placed, timeout=40)
    assert (saga["status"], saga["failure_reason"]) == ("completed", None)
    assert order["status"] == "confirmed"
    assert [n["channel"] for n in shop.notifications(placed["order_id"]) if n["channel"] == "email"] == ["email"]
    assert time.monotonic() - started < 10  # the reply did not wait for SNS


@pytest.mark.parametrize("kill", [True, False], ids=["kill -9", "SIGTERM"])
def test_a_participant_restarted_mid_flight_still_finishes_every_healthy_order(stack, shop, kill):
    sku = shop.new_sku(100)
    placed = []
    for module in ("inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc"):
        placed += [shop.place(shop.order_body(sku, quantity=1)) for _ in range(3)]
        time.sleep(0.2)  # the commands are in flight
        stack.stop_service(module, kill=kill)
        stack.start_service(module)
    sagas = [shop.settled(order, timeout=40)[1] for order in placed]
    assert [(s["status"], s["failure_reason"]) for s in sagas] == [("completed", None)] * len(placed)
    assert shop.stock(sku) == {"sku": sku, "available": 100 - len(placed), "reserved": len(placed)}


def test_an_order_whose_saga_never_started_is_cancelled_and_escalated(stack, shop):
    from tests.e2e.test_operations import sagactl

    sku = shop.new_sku(5)
    stack.stop_service("orchestrator")
    try:
        placed = shop.place(shop.order_body(sku))
        lost = eventually(lambda: shop.drain(stack.queue_url("orchestrator-commands")), what="the StartOrderSaga")
        assert [m["MessageAttributes"]["message_type"]["StringValue"] for m in lost] == ["StartOrderSaga"]
    finally:
        stack.start_service("orchestrator")
    order = eventually(
        lambda: (o := shop.order(placed["order_id"]))["status"] == "cancelled" and o, timeout=60, what="order cancelled"
    )
    assert order["cancel_reason"] == "saga could not start within 25s"
    saga = eventually(lambda: (s := shop.saga(placed["saga_id"]))["status"] == "compensated" and s, what="saga ended")
    assert saga["history"][0]["event"] == "saga_start_failed"
    listing = sagactl(stack, "dead-letters")
    assert placed["saga_id"] in listing and "SagaStartFailed" in listing
    assert shop.stock(sku)["available"] == 5 and shop.payments(placed["order_id"])["charged"] in ("0", "0.00")


def test_a_step_resolved_by_hand_is_settled_at_its_participant(stack, shop):
    """The refund queued when an operator settles it by hand either does nothing, or, if it
    had already run (SQS gives no order), is reported: in the history and to the alarm."""
    from tests.e2e.test_operations import sagactl, step_status

    sku = shop.new_sku(5)
    address = {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "AQ"}
    stack.stop_service("fulfillment_svc")
    try:
        placed = shop.place(shop.order_body(sku, quantity=1, shipping_address=address))
        eventually(lambda: step_status(shop, placed["saga_id"], "process_payment") == "succeeded", what="charged")
        stack.stop_service("payment_svc")
    finally:
        stack.start_service("fulfillment_svc")
    try:
        eventually(
            lambda: step_status(shop, placed["saga_id"], "process_payment") == "compensating",
            timeout=30,
            what="waiting on the refund",
        )
        sagactl(stack, "resolve", placed["saga_id"], "--reason", "refunded by bank transfer")
    finally:
        stack.start_service("payment_svc")
    events = eventually(
        lambda: (
            {h["event"] for h in shop.saga(placed["saga_id"])["history"]}
            & {"settlement_acknowledged", "compensation_ran_before_settlement"}
        ),
        timeout=30,
        what="the participant answers",
    )
    time.sleep(3)  # let every queued RefundPayment copy arrive
    payments = shop.payments(placed["order_id"])
    if events == {"settlement_acknowledged"}:
        assert (Decimal(payments["charged"]), Decimal(payments["refunded"])) == (Decimal("12.50"), Decimal("0"))
    else:
        assert Decimal(payments["refunded"]) == Decimal("12.50")
        assert "SettlementConflict" in sagactl(stack, "dead-letters")


def settlement_answers(shop, saga_id: str) -> dict[str, str]:
    """Each step's answer to its SettleStep, as the saga's history records it."""
    answers = {"settlement_acknowledged", "compensation_ran_before_settlement"}
    return {h["step"]: h["event"] for h in shop.saga(saga_id)["history"] if h["event"] in answers}


def dead_letters_of(shop, saga_id: str) -> list[dict]:
    """The saga's messages in any ``-dlq`` queue (not the escalations a person reads)."""
    from tests.e2e.test_operations import operator

    letters = operator(shop, "GET", "/operator/dead-letters").json()
    return [d for d in letters if d["saga_id"] == saga_id and d["queue"].endswith("-dlq")]


def test_resolving_a_saga_whose_order_cancellation_is_still_queued_settles_create_order_at_order_svc(stack, shop):
    """The CancelOrder of ``create_order`` waits in order_svc's queue when a person resolves the
    saga: order_svc answers the SettleStep for that step too, and nothing is dead-lettered."""
    from tests.e2e.test_operations import sagactl, step_status

    sku = shop.new_sku(5)
    stack.stop_service("inventory_svc")  # reserve_inventory times out, and the saga compensates
    try:
        placed = shop.place(shop.order_body(sku, quantity=1))
        stack.stop_service("order_svc")
        try:
            eventually(
                lambda: step_status(shop, placed["saga_id"], "create_order") == "compensating",
                timeout=40,
                what="CancelOrder queued for the stopped order_svc",
            )
            sagactl(stack, "resolve", placed["saga_id"], "--reason", "cancelled by phone")
        finally:
            stack.start_service("order_svc")
    finally:
        stack.start_service("inventory_svc")
    eventually(
        lambda: (a := settlement_answers(shop, placed["saga_id"])).keys() >= {"create_order", "reserve_inventory"} and a,
        timeout=30,
        what="both participants answer their SettleStep",
    )
    time.sleep(3)  # a SettleStep its participant cannot handle is dead-lettered within seconds
    assert dead_letters_of(shop, placed["saga_id"]) == []
    assert shop.saga(placed["saga_id"])["status"] == "compensated"
