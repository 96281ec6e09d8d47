"""Actions on many sagas at once: after an incident leaves 20 sagas needing a person, one
``sagactl bulk retry`` lists them (dry run), then settles them all, each audited."""

from __future__ import annotations

import json

import pytest

from contracts.topology import PAYMENT_COMMANDS
from tests.conftest import eventually
from tests.e2e.conftest import Shop, _stack, run_sagactl, sagactl

pytestmark = pytest.mark.e2e
INCIDENT = 20


@pytest.fixture(scope="module")
def shop(tmp_path_factory, postgres_server):
    """Sagas of 8 s whose compensations give up after one unanswered send: an incident soon
    leaves sagas that need a person."""
    with _stack(
        tmp_path_factory.mktemp("bulk"),
        postgres_server,
        ORCHESTRATOR_TIMEOUTS__SAGA_BUDGET="8",
        ORCHESTRATOR_TIMEOUTS__MAX_COMPENSATION_ATTEMPTS="1",
    ) as stack:
        yield Shop(stack)


def test_a_bulk_retry_lists_the_sagas_of_an_incident_then_settles_them_all_each_audited(shop):
    sku = shop.new_sku(100)
    shop.stack.stop_service("payment_svc")
    try:
        # Five of them (their own SKU) will be put right by hand, the rest retried.
        hand_sku = shop.new_sku(100)
        placed = [shop.place(shop.order_body(hand_sku if i < 5 else sku)) for i in range(INCIDENT)]
        # The timed-out step's compensation (RefundPayment) stays unanswered: after its one
        # send it escalates, and the saga needs a person.
        for order in placed:
            eventually(
                lambda order=order: (shop.saga(order["saga_id"]) or {}).get("status") == "needs_intervention",
                timeout=90,
                what=f"saga {order['saga_id']} needs a person",
            )
            assert shop.saga(order["saga_id"])["failed_step"] == "process_payment"
        # The incident: payment_svc lost what it had been sent while it was down.
        shop.drain(shop.stack.queue_url(PAYMENT_COMMANDS))
    finally:
        shop.stack.start_service("payment_svc")
    ids = {order["saga_id"] for order in placed}
    filters = ["--status", "needs_intervention", "--definition", "order", "--failed-step", "process_payment"]

    listed = sagactl(shop.stack, "bulk", "retry", *filters)
    assert {saga_id for saga_id in ids if saga_id in listed} == ids
    assert f"{INCIDENT} sagas would be acted on" in listed
    assert all(shop.saga(saga_id)["status"] == "needs_intervention" for saga_id in ids), "a dry run changes nothing"

    # A live action without a filter would act on every saga there is: refused, nothing done.
    unfiltered = run_sagactl(shop.stack, "bulk", "resolve", "--run", "--reason", "everything")
    assert unfiltered.returncode != 0 and "422" in unfiltered.stdout and "needs a filter" in unfiltered.stdout
    assert all(shop.saga(saga_id)["status"] == "needs_intervention" for saga_id in ids)

    # Five were put right by hand: resolved by the ids the dry run listed (the documented
    # POST /operator/sagas/bulk/resolve), the rest retried by the filter.
    by_hand = [order["saga_id"] for order in placed[:5]]
    resolved = sagactl(
        shop.stack,
        "bulk",
        "resolve",
        *[arg for i in by_hand for arg in ("--saga-id", i)],
        "--run",
        "--reason",
        "refunded by hand",
    )
    assert "5 sagas acted on" in resolved and resolved.count("resolved") == 5
    assert all(shop.saga(saga_id)["status"] == "compensated" for saga_id in by_hand)

    ran = sagactl(shop.stack, "bulk", "retry", *filters, "--run")
    assert f"{INCIDENT - 5} sagas acted on" in ran and ran.count("retried") == INCIDENT - 5

    def all_compensated() -> bool:
        return all(shop.saga(saga_id)["status"] == "compensated" for saga_id in ids)

    eventually(all_compensated, timeout=60, what="every saga of the incident compensated")
    for saga_id in ids - set(by_hand):
        history = shop.saga(saga_id)["history"]
        retried = [h for h in history if h["event"] == "operator_retry_compensation"]
        assert retried and "bootstrap (bulk)" in retried[0]["detail"], json.dumps(history)[:500]
    assert shop.stock(sku) == {"sku": sku, "available": 100, "reserved": 0}
    assert sagactl(shop.stack, "bulk", "retry", *filters).strip().endswith("0 sagas would be acted on (a dry run: --run to act)")
