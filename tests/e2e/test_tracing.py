"""One trace per saga, across the six services, through the outbox and SQS (OpenTelemetry).

A stack of its own exports its spans over OTLP/HTTP to the local viewer (stack/traces.py, a
real process on a port of its own); the tests read the spans back from it."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time

import httpx
import pytest

from contracts.topology import PAYMENT_COMMANDS
from stack.infra import free_port
from tests.conftest import eventually
from tests.e2e.conftest import Shop, _stack

pytestmark = pytest.mark.e2e
SERVICES = {"order", "orchestrator", "inventory", "payment", "fulfillment", "notification"}


@pytest.fixture(scope="module")
def viewer():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "stack.traces", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    eventually(lambda: _up(url), timeout=20, what="the trace viewer up")
    yield url
    process.terminate()
    process.wait(10)


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def traced(tmp_path_factory, postgres_server, viewer):
    with _stack(
        tmp_path_factory.mktemp("traced"),
        postgres_server,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=viewer,
        OTEL_BSP_SCHEDULE_DELAY="200",  # ms: spans reach the viewer soon after they end
    ) as stack:
        yield Shop(stack)


def caller_trace() -> tuple[str, str]:
    """A caller's own trace: its id and the traceparent header that carries it."""
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def spans(viewer: str, trace_id: str) -> list[dict]:
    response = httpx.get(f"{viewer}/api/traces/{trace_id}", timeout=5)
    return response.json() if response.status_code == 200 else []


def settled_trace(viewer: str, trace_id: str, *, until) -> list[dict]:
    """The trace's spans once ``until(spans)`` holds (spans arrive in batches, a moment late)."""
    found: list[dict] = []

    def complete() -> bool:
        nonlocal found
        found = spans(viewer, trace_id)
        return bool(until(found))

    try:
        eventually(complete, timeout=30, what=f"trace {trace_id} complete")
    except AssertionError as missing:
        seen = sorted({(s["service"], s["name"], s["attributes"].get("messaging.message.type")) for s in found})
        raise AssertionError(f"{missing}; its spans: {seen}") from None
    return found


def processed(found: list[dict], message_type: str) -> list[dict]:
    return [s for s in found if s["kind"] == "consumer" and s["attributes"].get("messaging.message.type") == message_type]


def parent_of(found: list[dict], span: dict) -> dict:
    [parent] = [s for s in found if s["span_id"] == span["parent_span_id"]]
    return parent


def test_an_order_is_one_trace_from_the_api_request_to_its_final_status_across_six_services(traced, viewer):
    trace_id, traceparent = caller_trace()
    sku = traced.new_sku(10)
    placed = traced.place(traced.order_body(sku), traceparent=traceparent)
    order, saga = traced.settled(placed)
    assert saga["status"] == "completed"

    handled = ("StartOrderSaga", "ReserveInventory", "InventoryReserved", "ProcessPayment", "PaymentProcessed")
    handled += ("FulfillOrder", "OrderFulfilled", "SendConfirmation", "ConfirmationSent", "ConfirmOrder", "SagaStatusChanged")
    found = settled_trace(viewer, trace_id, until=lambda s: all(processed(s, kind) for kind in handled))
    assert {s["service"] for s in found} == SERVICES
    [request] = [s for s in found if s["kind"] == "server" and s["service"] == "order" and "/orders" in s["name"]]
    assert request["parent_span_id"] == traceparent.split("-")[2]  # the caller's span is its parent
    [start] = processed(found, "StartOrderSaga")
    assert start["service"] == "orchestrator"
    steps = {
        "ReserveInventory": ("inventory", "InventoryReserved"),
        "ProcessPayment": ("payment", "PaymentProcessed"),
        "FulfillOrder": ("fulfillment", "OrderFulfilled"),
        "SendConfirmation": ("notification", "ConfirmationSent"),
    }
    for command, (service, reply) in steps.items():
        [handled] = processed(found, command)
        assert handled["service"] == service
        created = parent_of(found, handled)  # the command staged in the outbox is the parent...
        assert created["kind"] == "producer" and created["service"] == "orchestrator"
        assert created["attributes"]["messaging.message.id"] == handled["attributes"]["messaging.message.id"]
        [answered] = processed(found, reply)  # ...and the reply handled is a child of the one staged
        assert answered["service"] == "orchestrator" and parent_of(found, answered)["service"] == service
    confirmation = processed(found, "ConfirmOrder")
    assert [s["service"] for s in confirmation] == ["order"]
    final = [s for s in processed(found, "SagaStatusChanged") if s["service"] == "order"]
    assert final, "the saga's final status reaching order_svc is in the trace"
    # The relay's publish of a batch is no message's parent: a span of its own, linked to them.
    assert not any(s["name"].startswith("send ") for s in found)
    # The usual instrumentation beneath the message spans: SQL statements (SQLAlchemy's).
    by_id = {s["span_id"]: s for s in found}
    statements = [s for s in found if "db.system" in s["attributes"] or "db.system.name" in s["attributes"]]
    assert statements and all(s["parent_span_id"] in by_id for s in statements)


def test_a_compensated_orders_trace_holds_its_compensations(traced, viewer):
    trace_id, traceparent = caller_trace()
    sku = traced.new_sku(10)
    placed = traced.place(traced.order_body(sku, payment_token="tok_chargeDeclined"), traceparent=traceparent)
    _, saga = traced.settled(placed)
    assert saga["status"] == "compensated"
    compensated = ("ReleaseInventory", "InventoryReleased")
    found = settled_trace(viewer, trace_id, until=lambda s: all(processed(s, kind) for kind in compensated))
    assert [s["service"] for s in processed(found, "ReleaseInventory")] == ["inventory"]
    assert [s["service"] for s in processed(found, "PaymentFailed")] == ["orchestrator"]


def test_a_resend_after_silence_and_the_deadline_that_fired_it_are_in_the_sagas_trace(traced, viewer):
    trace_id, traceparent = caller_trace()
    traced.stack.stop_service("payment_svc")
    try:
        placed = traced.place(traced.order_body(traced.new_sku(10)), traceparent=traceparent)
        # Lost, not merely waiting: a resend is only for a command that is gone from the queue.
        queue = traced.stack.queue_url(PAYMENT_COMMANDS)
        eventually(
            lambda: any(json.loads(m["Body"])["saga_id"] == placed["saga_id"] for m in traced.drain(queue)),
            timeout=20,
            what="the payment command taken off its queue",
        )
        found = settled_trace(viewer, trace_id, until=lambda s: [x for x in s if x["name"] == "deadline check"])
    finally:
        traced.stack.start_service("payment_svc")
    _, saga = traced.settled(placed, timeout=60)
    assert any(h["event"] == "step_resent" and h["step"] == "process_payment" for h in saga["history"])
    found = settled_trace(viewer, trace_id, until=lambda s: len(processed(s, "ProcessPayment")) >= 1)
    checks = [s for s in found if s["name"] == "deadline check"]
    assert checks and all(s["service"] == "orchestrator" for s in checks)
    resends = [s for s in found if s["kind"] == "producer" and s["attributes"].get("messaging.message.type") == "ProcessPayment"]
    assert len(resends) >= 2  # the first send and at least one resend, all in the saga's trace
    # Whether the participant's queue is backed up is asked of SQS while judging the deadline:
    # an AWS call (aiobotocore's instrumentation) inside the saga's trace.
    assert any(s["attributes"].get("rpc.method") == "GetQueueAttributes" for s in found)
    handled_check = processed(found, "CheckSagaDeadlines")
    assert handled_check and {parent_of(found, parent_of(found, s))["name"] for s in handled_check} == {"deadline check"}


def test_every_log_line_written_while_handling_a_message_carries_its_trace_id(traced, viewer):
    trace_id, traceparent = caller_trace()
    placed = traced.place(traced.order_body(traced.new_sku(10)), traceparent=traceparent)
    _, saga = traced.settled(placed)
    time.sleep(1)  # the last lines flushed to the log files
    handled = []
    for module in ("orchestrator", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc", "order_svc"):
        for line in (traced.stack.workdir / f"{module}.log").read_text().splitlines():
            record = json.loads(line)
            if record.get("saga_id") == placed["saga_id"] and record.get("message_type"):
                handled.append(record)
    assert {r["service"] for r in handled} >= {"orchestrator", "inventory", "payment", "fulfillment", "notification"}
    assert all(r.get("trace_id") == trace_id and r.get("span_id") for r in handled), [
        r for r in handled if r.get("trace_id") != trace_id
    ][:3]
