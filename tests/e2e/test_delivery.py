"""At-least-once delivery in any order: duplicates, overtaking compensations, poison messages."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from contracts import messages as c
from messaging.envelope import Envelope
from stack.runner import Stack
from tests.conftest import eventually
from tests.e2e.conftest import Shop, _stack, bodies

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def doubled(tmp_path_factory, postgres_server, topologies):
    """A second system in which every relay publishes every message twice."""
    with _stack(tmp_path_factory.mktemp("doubled"), postgres_server, topologies, RELAY_DUPLICATE_DELIVERY="1") as running:
        yield Shop(running)


def test_every_command_and_reply_delivered_twice_still_has_each_effect_once(doubled):
    sku = doubled.new_sku(10)
    placed = doubled.place(doubled.order_body(sku, quantity=2))
    order, saga = doubled.settled(placed)
    assert saga["status"] == "completed"
    assert all(s["attempts"] == 1 for s in saga["steps"][1:])
    assert doubled.stock(sku) == {"sku": sku, "available": 8, "reserved": 2}
    payments = doubled.payments(placed["order_id"])
    assert [p["kind"] for p in payments["payments"]] == ["charge"] and Decimal(payments["charged"]) == Decimal("25.00")
    assert len(doubled.shipments(placed["order_id"])) == 1
    notifications = eventually(lambda: (n := doubled.notifications(placed["order_id"])) and n)
    assert sorted(n["channel"] for n in notifications) == ["email", "push"]
    ignored = [h for h in saga["history"] if h["event"] == "reply_ignored"]
    assert ignored == []  # the copies never reached the engine: the inbox dropped them
    for module, copy in [("inventory_svc", "ReserveInventory"), ("orchestrator", "InventoryReserved")]:
        metrics = doubled.http.get(doubled.url(module, "/metrics")).text
        assert duplicates(metrics, copy) >= 1, f"{module} never saw a duplicate {copy}"


def duplicates(metrics: str, message_type: str) -> float:
    for line in metrics.splitlines():
        if (
            line.startswith("messages_handled_total{")
            and f'message_type="{message_type}"' in line
            and 'outcome="duplicate"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0


def test_compensation_delivered_twice_undoes_once(doubled):
    sku = doubled.new_sku(10)
    body = doubled.order_body(sku, quantity=4)
    body["shipping_address"]["country"] = "AQ"
    placed = doubled.place(body)
    order, saga = doubled.settled(placed)
    assert saga["status"] == "compensated"
    payments = doubled.payments(placed["order_id"])
    assert [p["kind"] for p in payments["payments"]] == ["charge", "refund"]
    doubled.assert_books_balanced(placed["order_id"], sku, 10)


def test_a_refused_refund_delivered_twice_is_escalated_as_one_case(doubled):
    sku = doubled.new_sku(10)
    placed = doubled.place(doubled.refund_failure_body(sku))
    order, saga = doubled.settled(placed)
    assert saga["status"] == "needs_intervention"
    assert doubled.stock(sku)["available"] == 10

    def listed():
        letters = doubled.http.get(
            doubled.url("orchestrator", "/operator/dead-letters"), headers={"Authorization": "Bearer test-operator-token"}
        ).json()
        return [d for d in letters if d["saga_id"] == placed["saga_id"]]

    [letter] = eventually(listed, what="the escalation listed")
    assert letter["step"] == "process_payment" and letter["queue"] == "saga-escalations"


def send(stack: Stack, queue: str, message, saga_id: uuid.UUID, reply_to: str) -> Envelope:
    # As the orchestrator, the one sender a command queue takes (moto stamps every request with
    # one SenderId, so only the claimed sender is checked here).
    envelope = Envelope.wrap(message, sender="orchestrator", saga_id=saga_id, reply_to=reply_to)
    stack.send(queue, envelope.model_dump_json(), group=str(saga_id))
    return envelope


@pytest.fixture
def reply_queue(stack):
    sqs = stack.client("sqs")
    logical = f"test-replies-{uuid.uuid4().hex[:8]}"
    sqs.create_queue(QueueName=f"{stack.prefix}-{logical}")
    return logical


def test_compensation_that_overtakes_its_command_leaves_nothing_applied(stack, shop, reply_queue):
    sku = shop.new_sku(10)
    saga_id, order_id = uuid.uuid4(), uuid.uuid4()
    replies_url = stack.queue_url(reply_queue)

    send(stack, "inventory-commands", c.ReleaseInventory(order_id=order_id), saga_id, reply_queue)
    first = eventually(lambda: bodies(shop.drain(replies_url)), what="reply to the early compensation")
    assert [r["message_type"] for r in first] == ["InventoryReleased"]

    send(
        stack,
        "inventory-commands",
        c.ReserveInventory(order_id=order_id, items=[{"sku": sku, "quantity": 3, "unit_price": "1.00"}]),
        saga_id,
        reply_queue,
    )
    late = eventually(lambda: bodies(shop.drain(replies_url)), what="reply to the late command")
    assert [r["message_type"] for r in late] == ["InventoryReservationFailed"]
    assert "compensated before it was applied" in late[0]["payload"]["reason"]
    assert shop.stock(sku) == {"sku": sku, "available": 10, "reserved": 0}


def test_a_retried_command_with_a_new_message_id_gets_the_same_answer_and_no_second_effect(stack, shop, reply_queue):
    sku = shop.new_sku(10)
    saga_id, order_id = uuid.uuid4(), uuid.uuid4()
    replies_url = stack.queue_url(reply_queue)
    reserve = c.ReserveInventory(order_id=order_id, items=[{"sku": sku, "quantity": 3, "unit_price": "1.00"}])
    for _ in range(2):
        send(stack, "inventory-commands", reserve, saga_id, reply_queue)
    replies = eventually(lambda: (r := bodies(shop.drain(replies_url))) and len(r) == 2 and r, what="two replies")
    assert [r["message_type"] for r in replies] == ["InventoryReserved", "InventoryReserved"]
    assert shop.stock(sku) == {"sku": sku, "available": 7, "reserved": 3}


@pytest.mark.parametrize("queue", ["inventory-commands", "orchestrator-replies"])
def test_malformed_message_ends_in_the_dead_letter_queue_and_the_service_keeps_working(stack, shop, queue):
    marker = f"garbage-{uuid.uuid4()}"
    sqs = stack.client("sqs")
    stack.send(queue, json.dumps({"junk": marker}))
    sku = shop.new_sku(5)
    order, saga = shop.settled(shop.place(shop.order_body(sku, quantity=1)))
    assert saga["status"] == "completed"

    def dead_lettered():
        for message in sqs.receive_message(
            QueueUrl=stack.queue_url(f"{queue}-dlq"),
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        ).get("Messages", []):
            if marker in message["Body"]:
                sqs.delete_message(QueueUrl=stack.queue_url(f"{queue}-dlq"), ReceiptHandle=message["ReceiptHandle"])
                return message
        return None

    message = eventually(dead_lettered, timeout=30, what="malformed message in the DLQ")
    # Moved by its consumer at its first failure, with why: it will never parse.
    reason = json.loads(message["MessageAttributes"]["dead_letter"]["StringValue"])
    assert reason["error_type"] == "MalformedMessage" and reason["queue"] == queue and reason["receive_count"] == 1
