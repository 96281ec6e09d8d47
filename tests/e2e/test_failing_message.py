"""A failing message costs only itself: on real processes, the orchestrator's handler fails for
one reply (``SAGA_FAULT_FIRST_OF``, as a bug in one message would). After
``CONSUMER_DEAD_LETTER_AFTER`` attempts the consumer moves it to the dead-letter queue with its
reason, and the saga's messages behind it in its FIFO group (the reply to the resent command,
the deadline checks) are handled, not dead-lettered: the order completes, charged once."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from contracts.topology import ORCHESTRATOR_REPLIES


def _dead_letters_of(shop, saga_id: str) -> list[dict]:
    """The saga's messages in the replies' dead-letter queue, left there (another test may look)."""
    sqs = shop.stack.client("sqs")
    url = shop.stack.queue_url(f"{ORCHESTRATOR_REPLIES}-dlq")
    found: dict[str, dict] = {}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=2, MessageAttributeNames=["All"]
        ).get("Messages", [])
        for message in messages:
            if message.get("MessageAttributes", {}).get("saga_id", {}).get("StringValue") == saga_id:
                found[message["MessageId"]] = message
    return list(found.values())


def test_a_reply_whose_handler_keeps_failing_is_dead_lettered_with_its_reason_and_the_saga_goes_on(stack, shop):
    with stack.restarted_with("orchestrator", SAGA_FAULT_FIRST_OF="InventoryReserved", CONSUMER_DEAD_LETTER_AFTER="2"):
        sku = shop.new_sku(available=5)
        placed = shop.place(shop.order_body(sku, 1))
        order, saga = shop.settled(placed, timeout=60)
        assert saga["status"] == "completed", saga
        assert order["status"] == "confirmed"
        payments = shop.payments(placed["order_id"])
        dead = _dead_letters_of(shop, placed["saga_id"])
    assert [json.loads(m["Body"])["message_type"] for m in dead] == ["InventoryReserved"], "the failing reply alone"
    reason = json.loads(dead[0]["MessageAttributes"]["dead_letter"]["StringValue"])
    assert reason["error_type"] == "InjectedFault" and reason["failures"] == 2
    assert reason["queue"] == ORCHESTRATOR_REPLIES and reason["replica"] and reason["at"]
    # The resent command's reply, behind it in the group, is what moved the saga on.
    events = [entry["event"] for entry in saga["history"]]
    assert "step_resent" in events or any("resen" in e for e in events), events
    assert Decimal(payments["charged"]) == Decimal("12.50") and Decimal(payments["refunded"]) == 0, "charged once"
    assert shop.stock(sku)["available"] == 4
