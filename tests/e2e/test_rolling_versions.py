"""A rolling deploy that adds a step to the order saga, with two real orchestrator processes:
the old release (version 1 only) and the new one (version 2, with payment_svc's fraud screen,
for new sagas; version 1 kept) side by side while orders keep coming. Every saga ends on the
version it started with, and the books balance."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from tests.e2e.conftest import Shop, _stack

pytestmark = pytest.mark.e2e
OLD = {"ORCHESTRATOR_RUN_VERSIONS__ORDER": "[1]", "ORCHESTRATOR_START_VERSIONS__ORDER": "1"}
NEW = {"ORCHESTRATOR_RUN_VERSIONS__ORDER": "[1, 2]", "ORCHESTRATOR_START_VERSIONS__ORDER": "2"}
STOCK = 1000


@pytest.fixture(scope="module")
def shop(tmp_path_factory, postgres_server):
    with _stack(tmp_path_factory.mktemp("rolling"), postgres_server, replicas={"orchestrator": 2}, **OLD) as stack:
        yield Shop(stack)


def deploy(shop: Shop, instance: str) -> None:
    """Replace one orchestrator process by the new release (SIGTERM, then start)."""
    shop.stack.service_env[instance] = NEW
    shop.stack.stop_service(instance)
    shop.stack.start_service(instance)


def test_every_saga_ends_on_the_version_it_started_with_across_a_rolling_deploy(shop):
    sku = shop.new_sku(STOCK)
    placed: list[dict] = []
    stop = threading.Event()

    def customers() -> None:
        while not stop.is_set():
            placed.append(Shop(shop.stack).place(shop.order_body(sku, quantity=1)))
            time.sleep(0.3)

    load = threading.Thread(target=customers)
    load.start()
    try:
        time.sleep(4)  # the old release alone
        deploy(shop, "orchestrator#1")
        time.sleep(6)  # old and new side by side: each saga's messages go to either
        deploy(shop, "orchestrator")
        time.sleep(3)  # the new release alone
    finally:
        stop.set()
        load.join()

    sagas = [shop.settled(order, timeout=60)[1] for order in placed]
    versions = {saga["version"] for saga in sagas}
    assert versions == {1, 2}, "sagas of both versions ran"
    for saga in sagas:
        names = [step["name"] for step in saga["steps"]]
        assert ("screen_order" in names) == (saga["version"] == 2), saga["saga_id"]
        assert saga["status"] == "completed", (saga["saga_id"], saga["failure_reason"])
        if saga["version"] == 2:
            assert next(s for s in saga["steps"] if s["name"] == "screen_order")["status"] == "succeeded"
    # The books: one unit reserved per order, one charge each, nothing refunded.
    assert shop.stock(sku) == {"sku": sku, "available": STOCK - len(placed), "reserved": len(placed)}
    for order in placed:
        payments = shop.payments(order["order_id"])
        assert Decimal(payments["charged"]) > 0 and Decimal(payments["refunded"]) == 0
    # The old release met sagas of a version it does not run and left them for the new one.
    old_log = (shop.stack.workdir / "orchestrator.log").read_text()
    assert "message_left_for_another" in old_log and "version 2 is not registered here" in old_log
