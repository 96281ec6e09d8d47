"""The customer's cancellation over HTTP: each case of the order_cancellation saga, with the
books checked and both sagas of the order visible side by side."""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from decimal import Decimal

import pytest

from contracts.topology import INVENTORY_COMMANDS
from tests.conftest import eventually
from tests.e2e.conftest import Shop, _stack

pytestmark = pytest.mark.e2e
FINAL = {"completed", "compensated", "needs_intervention"}


def confirmed_order(shop: Shop, sku: str, **overrides) -> dict:
    placed = shop.place(shop.order_body(sku, quantity=2, **overrides))
    order, saga = shop.settled(placed)
    assert saga["status"] == "completed", saga
    return placed


def cancel(shop: Shop, order_id: str):
    return shop.http.post(shop.url("order_svc", f"/orders/{order_id}/cancel"))


def cancellation_settled(shop: Shop, saga_id: str) -> dict:
    return eventually(
        lambda: (s := shop.saga(saga_id)) and s["status"] in FINAL and s, timeout=40, what=f"cancellation saga {saga_id} final"
    )


def order_sagas_reported(shop: Shop, order_id: str, expected: dict[str, str]) -> dict:
    return eventually(
        lambda: (o := shop.order(order_id)) and {s["definition"]: s["status"] for s in o["sagas"]} == expected and o,
        what=f"order's sagas {expected}",
    )


def test_a_confirmed_order_is_cancelled_refunded_and_restocked_and_both_sagas_are_listed(shop):
    sku = shop.new_sku(10)
    placed = confirmed_order(shop, sku)
    response = cancel(shop, placed["order_id"])
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["definition"] == "order_cancellation" and accepted["order_id"] == placed["order_id"]
    assert accepted["saga_id"] != placed["saga_id"] and accepted["status"] in {"running", "completed"}

    saga = cancellation_settled(shop, accepted["saga_id"])
    assert saga["status"] == "completed" and saga["definition"] == "order_cancellation"
    assert saga["subject"] == placed["order_id"]
    assert [(s["name"], s["status"]) for s in saga["steps"]] == [
        ("cancel_scheduled_shipment", "succeeded"),
        ("refund_charge", "succeeded"),
        ("return_reserved_stock", "succeeded"),
        ("cancel_confirmed_order", "succeeded"),
        ("send_cancellation_notice", "succeeded"),
    ]
    order = order_sagas_reported(shop, placed["order_id"], {"order": "completed", "order_cancellation": "completed"})
    assert order["status"] == "cancelled" and order["cancel_reason"] == "cancelled by customer"
    assert [s["saga_id"] for s in order["sagas"]] == [placed["saga_id"], accepted["saga_id"]]
    assert shop.stock(sku) == {"sku": sku, "available": 10, "reserved": 0}
    payments = shop.payments(placed["order_id"])
    assert Decimal(payments["charged"]) == Decimal(payments["refunded"]) == Decimal("25.00")
    assert [s["status"] for s in shop.shipments(placed["order_id"])] == ["cancelled"]
    notices = [n for n in shop.notifications(placed["order_id"]) if n["saga_id"] == accepted["saga_id"]]
    assert sorted((n["channel"], n["subject"]) for n in notices) == [
        ("email", f"Your order {placed['order_id']} is cancelled"),
        ("push", None),
    ]

    again = cancel(shop, placed["order_id"])  # idempotent once finished too
    assert again.status_code == 202 and again.json() == accepted | {"status": "completed"}
    listed = shop.operator.get(shop.url("orchestrator", "/sagas"), params={"definition": "order_cancellation"}).json()
    assert accepted["saga_id"] in {s["saga_id"] for s in listed} and {s["definition"] for s in listed} == {"order_cancellation"}


def test_a_dispatched_parcel_refuses_the_cancellation_and_the_customer_is_told(shop):
    sku = shop.new_sku(10)
    placed = confirmed_order(shop, sku)
    [shipment] = shop.shipments(placed["order_id"])
    dispatched = shop.operator.post(shop.url("fulfillment_svc", f"/shipments/{shipment['shipment_id']}/dispatch"))
    assert dispatched.status_code == 200, dispatched.text

    accepted = cancel(shop, placed["order_id"]).json()
    saga = cancellation_settled(shop, accepted["saga_id"])

    assert saga["status"] == "compensated" and saga["failed_step"] == "cancel_scheduled_shipment"
    assert "dispatched" in saga["failure_reason"]
    order = order_sagas_reported(shop, placed["order_id"], {"order": "completed", "order_cancellation": "compensated"})
    assert order["status"] == "confirmed" and order["cancel_reason"] is None
    assert shop.stock(sku) == {"sku": sku, "available": 8, "reserved": 2}
    assert Decimal(shop.payments(placed["order_id"])["refunded"]) == 0
    refusal = eventually(
        lambda: [n for n in shop.notifications(placed["order_id"]) if n["saga_id"] == accepted["saga_id"]],
        what="the refusal notice",
    )
    assert sorted((n["channel"], n["subject"]) for n in refusal) == [
        ("email", f"Your order {placed['order_id']} could not be cancelled"),
        ("push", None),
    ]
    assert cancel(shop, placed["order_id"]).json() == accepted | {"status": "compensated"}


def test_a_rejected_refund_needs_a_person_and_every_other_step_is_still_done(shop):
    sku = shop.new_sku(10)
    placed = confirmed_order(shop, sku, payment_token="tok_refundFail")
    accepted = cancel(shop, placed["order_id"]).json()
    saga = cancellation_settled(shop, accepted["saga_id"])

    assert saga["status"] == "needs_intervention"
    steps = {s["name"]: s for s in saga["steps"]}
    assert steps["refund_charge"]["status"] == "escalated" and "refund rejected" in steps["refund_charge"]["error"]
    assert {n: s["status"] for n, s in steps.items() if n != "refund_charge"} == dict.fromkeys(
        ["cancel_scheduled_shipment", "return_reserved_stock", "cancel_confirmed_order", "send_cancellation_notice"], "succeeded"
    )
    order = shop.order(placed["order_id"])
    assert order["status"] == "cancelled" and order["cancel_reason"] == "cancelled by customer"
    assert shop.stock(sku) == {"sku": sku, "available": 10, "reserved": 0}
    escalations = [
        e
        for e in shop.operator.get(
            shop.url("orchestrator", "/operator/dead-letters"), headers={"Authorization": "Bearer test-operator-token"}
        ).json()
        if e["saga_id"] == accepted["saga_id"]
    ]
    assert [(e["step"], e["queue"].endswith("saga-escalations")) for e in escalations][:1] == [("refund_charge", True)]


def test_only_a_confirmed_order_can_be_cancelled(shop):
    assert cancel(shop, str(uuid.uuid4())).status_code == 404
    sku = shop.new_sku(10)
    declined = shop.place(shop.order_body(sku, payment_token="tok_chargeDeclined"))
    order, _ = shop.settled(declined)
    refused = cancel(shop, declined["order_id"])
    assert refused.status_code == 409 and "cancelled when it was placed" in refused.text
    assert [s["definition"] for s in shop.order(declined["order_id"])["sagas"]] == ["order"]


def test_a_pending_order_cannot_be_cancelled_yet(shop):
    sku = shop.new_sku(10)
    placed = shop.place(shop.order_body(sku))
    response = cancel(shop, placed["order_id"])
    if shop.order(placed["order_id"])["status"] != "pending":  # the machine confirmed it before we asked
        pytest.skip("the order saga finished before the request")
    assert response.status_code == 409 and "still being placed" in response.text


def test_concurrent_cancellations_of_one_order_start_one_saga(shop):
    placed = confirmed_order(shop, shop.new_sku(10))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(
            pool.map(
                lambda _: Shop(shop.stack).http.post(shop.url("order_svc", f"/orders/{placed['order_id']}/cancel")), range(4)
            )
        )
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["saga_id"] for r in responses}) == 1
    cancellation_settled(shop, responses[0].json()["saga_id"])


def test_after_the_pivot_a_participant_that_is_down_gets_no_copy_while_its_command_waits_and_one_once_it_is_lost(shop):
    """A resend is for a command that is lost, not for one waiting its turn: while the stopped
    participant's queue holds it, the resend is deferred (recorded); once it is gone from the
    queue, the step is sent again, and the restarted participant finishes the saga."""
    sku = shop.new_sku(10)
    placed = confirmed_order(shop, sku)
    shop.stack.stop_service("inventory_svc")

    def events(saga_id: str, event: str) -> list[dict]:
        history = (shop.saga(saga_id) or {"history": []})["history"]
        return [h for h in history if h["event"] == event and h["step"] == "return_reserved_stock"]

    try:
        saga_id = cancel(shop, placed["order_id"]).json()["saga_id"]
        eventually(lambda: events(saga_id, "step_resend_deferred"), what="the resend deferred")
        assert "waiting at inventory-commands" in events(saga_id, "step_resend_deferred")[0]["detail"]
        assert not events(saga_id, "step_resent")
        lost = [json.loads(m["Body"]) for m in shop.drain(shop.stack.queue_url(INVENTORY_COMMANDS))]
        assert [m["message_type"] for m in lost if m["saga_id"] == saga_id] == ["ReturnReservedStock"]
        eventually(lambda: events(saga_id, "step_resent"), what="the lost command sent again")
    finally:
        shop.stack.start_service("inventory_svc")
    saga = cancellation_settled(shop, saga_id)
    assert saga["status"] == "completed"
    assert not [h for h in saga["history"] if h["event"].startswith("compensation")]
    assert shop.stock(sku) == {"sku": sku, "available": 10, "reserved": 0}


@pytest.fixture(scope="module")
def short_budget(tmp_path_factory, postgres_server):
    """A system whose sagas have 8 s: a step after the pivot that stays silent escalates soon,
    and so does a compensation not acknowledged after its first send."""
    with _stack(
        tmp_path_factory.mktemp("short-budget"),
        postgres_server,
        ORCHESTRATOR_TIMEOUTS__SAGA_BUDGET="8",
        ORCHESTRATOR_TIMEOUTS__SEND_CANCELLATION_NOTICE="2",
        ORCHESTRATOR_TIMEOUTS__MAX_COMPENSATION_ATTEMPTS="1",
    ) as stack:
        yield Shop(stack)


def test_a_step_still_silent_after_the_budget_escalates_and_its_late_answer_is_taken_for_its_operator(short_budget):
    shop = short_budget
    placed = confirmed_order(shop, shop.new_sku(10))
    shop.stack.stop_service("notification_svc")
    try:
        accepted = cancel(shop, placed["order_id"]).json()
        saga = cancellation_settled(shop, accepted["saga_id"])
        assert saga["status"] == "needs_intervention"
        assert [(s["name"], s["status"]) for s in saga["steps"]][-1] == ("send_cancellation_notice", "escalated")
        assert shop.order(placed["order_id"])["status"] == "cancelled"
    finally:
        shop.stack.start_service("notification_svc")
    # The participant finds the command in its queue and answers: the step is done after all, but
    # the saga, handed to a person, waits for their recorded action.
    eventually(
        lambda: (
            {s["name"]: s["status"] for s in shop.saga(accepted["saga_id"])["steps"]}["send_cancellation_notice"] == "succeeded"
        ),
        timeout=60,
        what="the late answer taken in",
    )
    saga = shop.saga(accepted["saga_id"])
    assert saga["status"] == "needs_intervention" and saga["history"][-1]["event"] == "awaiting_operator"
    resolved = shop.operator.post(
        shop.url("orchestrator", f"/operator/sagas/{accepted['saga_id']}/resolve"), json={"reason": "the notice went out late"}
    )
    assert resolved.status_code == 200, resolved.text
    eventually(lambda: shop.saga(accepted["saga_id"])["status"] == "completed", timeout=30, what="saga completed")
    order_sagas_reported(shop, placed["order_id"], {"order": "completed", "order_cancellation": "completed"})


def test_resolving_a_cancellation_whose_reinstatement_is_still_queued_settles_it_at_fulfillment_svc(short_budget):
    """The pivot times out while fulfillment_svc is down, and its ReinstateShipment, never
    acknowledged, escalates: resolved by hand, fulfillment_svc answers the SettleStep for the
    cancellation's step (not only for the order saga's), and nothing is dead-lettered."""
    from tests.e2e.test_operations import sagactl
    from tests.e2e.test_resilience import dead_letters_of, settlement_answers

    shop = short_budget
    placed = confirmed_order(shop, shop.new_sku(10))
    shop.stack.stop_service("fulfillment_svc")
    try:
        accepted = cancel(shop, placed["order_id"]).json()
        eventually(
            lambda: (shop.saga(accepted["saga_id"]) or {}).get("status") == "needs_intervention",
            timeout=40,
            what="the reinstatement escalated",
        )
        sagactl(shop.stack, "resolve", accepted["saga_id"], "--reason", "parcel checked by hand")
    finally:
        shop.stack.start_service("fulfillment_svc")
    [(step, answer)] = eventually(
        lambda: list(settlement_answers(shop, accepted["saga_id"]).items()), timeout=30, what="fulfillment_svc answers"
    )
    assert step == "cancel_scheduled_shipment"
    assert answer in {"settlement_acknowledged", "compensation_ran_before_settlement"}
    time.sleep(3)  # a SettleStep its participant cannot handle is dead-lettered within seconds
    assert dead_letters_of(shop, accepted["saga_id"]) == []
    assert shop.saga(accepted["saga_id"])["status"] == "compensated"
    assert shop.order(placed["order_id"])["status"] == "confirmed"
