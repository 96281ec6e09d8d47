"""Pause and resume: a paused definition holds its new sagas at their start (accepted, not
refused) and resuming runs them in order; a paused saga sends nothing until it is resumed."""

from __future__ import annotations

import time

import pytest

from tests.conftest import eventually
from tests.e2e.conftest import sagactl

pytestmark = pytest.mark.e2e


def events(shop, saga_id: str) -> list[str]:
    return [h["event"] for h in (shop.saga(saga_id) or {"history": []})["history"]]


def step_status(shop, saga_id: str, index: int) -> str | None:
    saga = shop.saga(saga_id)
    return saga["steps"][index]["status"] if saga else None


def test_a_paused_definition_holds_new_sagas_at_their_start_and_resuming_runs_them_in_order(stack, shop):
    sku = shop.new_sku(10)
    sagactl(stack, "pause", "order", "--reason", "inventory being repaired")
    try:
        first, second = (shop.place(shop.order_body(sku, quantity=1)) for _ in range(2))  # accepted, not refused
        for placed in (first, second):
            eventually(lambda placed=placed: "saga_held" in events(shop, placed["saga_id"]), what="the saga held")
        time.sleep(3)  # long enough for a first command to have been handled, had one been sent
        for placed in (first, second):
            saga = shop.saga(placed["saga_id"])
            assert saga["status"] == "running" and saga["paused_at"] and saga["steps"][1]["status"] == "running"
            assert "inventory being repaired" in next(h["detail"] for h in saga["history"] if h["event"] == "saga_held")
        assert shop.stock(sku) == {"sku": sku, "available": 10, "reserved": 0}  # nothing reserved
    finally:
        resumed = sagactl(stack, "resume", "order")
    assert "resumed_sagas" in resumed
    finished = [shop.settled(placed) for placed in (first, second)]
    assert [saga["status"] for _, saga in finished] == ["completed", "completed"]
    at = [next(h["at"] for h in saga["history"] if h["event"] == "saga_resumed") for _, saga in finished]
    assert at[0] <= at[1], "held sagas resume oldest first"


def test_a_paused_saga_sends_nothing_until_it_is_resumed(stack, shop):
    sku = shop.new_sku(10)
    stack.stop_service("payment_svc")
    try:
        placed = shop.place(shop.order_body(sku))
        eventually(lambda: step_status(shop, placed["saga_id"], 2) == "running", what="process_payment running")
        sagactl(stack, "pause", placed["saga_id"], "--reason", "checking the charge")
    finally:
        stack.start_service("payment_svc")
    # The payment's answer is taken in, but the next command (FulfillOrder) is not sent.
    eventually(lambda: step_status(shop, placed["saga_id"], 2) == "succeeded", timeout=30, what="payment answered")
    time.sleep(3)
    saga = shop.saga(placed["saga_id"])
    assert saga["paused_at"] and saga["status"] == "running" and saga["steps"][3]["status"] == "running"
    assert shop.shipments(placed["order_id"]) == []
    assert "saga_paused" in events(shop, placed["saga_id"])
    sagactl(stack, "resume", placed["saga_id"])
    _, saga = shop.settled(placed)
    assert saga["status"] == "completed" and "saga_resumed" in [h["event"] for h in saga["history"]]
    assert shop.stock(sku) == {"sku": sku, "available": 8, "reserved": 2}  # one order's worth, once
    assert len(shop.shipments(placed["order_id"])) == 1
