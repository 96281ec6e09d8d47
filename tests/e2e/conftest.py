"""The whole system, started once per test session: every service as its own process,
PostgreSQL, and a moto server (or ``AWS_ENDPOINT_URL`` if set)."""
from __future__ import annotations

import json
import uuid
from decimal import Decimal

import httpx
import pytest

from messaging.topology import ORDER_EVENTS, Naming
from stack.infra import free_port
from stack.runner import Stack
from stack.services import SERVICES
from tests.conftest import USER_AWS_ENDPOINT, eventually


def _stack(workdir, postgres_server, **env) -> Stack:
    return Stack(
        workdir=workdir, database_url=postgres_server, endpoint=USER_AWS_ENDPOINT,
        ports={s.module: free_port() for s in SERVICES},
        env={"ORCHESTRATOR_OPERATOR_TOKEN": "test-operator-token", "RELAY_POLL_INTERVAL": "0.5",
             "CONSUMER_WAIT_SECONDS": "1", "ORDER_SAGA_START_BOUND": "10", "ORDER_STRANDED_CHECK_INTERVAL": "1", **env},
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory, postgres_server):
    with _stack(tmp_path_factory.mktemp("e2e"), postgres_server) as running:
        yield running


class Shop:
    """The system as a user sees it: HTTP APIs, plus the emulator for queues."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = httpx.Client(timeout=10)

    def url(self, module: str, path: str) -> str:
        return self.stack.url(module) + path

    def new_sku(self, available: int) -> str:
        sku = f"SKU-{uuid.uuid4().hex[:10].upper()}"
        assert self.http.put(self.url("inventory_svc", f"/stock/{sku}"), json={"available": available}).status_code == 200
        return sku

    def order_body(self, sku: str, quantity: int = 2, **overrides) -> dict:
        body = {
            "customer_id": "c-1", "customer_email": "ada@example.com", "currency": "USD",
            "items": [{"sku": sku, "quantity": quantity, "unit_price": "12.50"}],
            "payment_token": "tok_visa",
            "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Springfield",
                                 "postal_code": "12345", "country": "US"},
        }
        body.update(overrides)
        return body

    def refund_failure_body(self, sku: str) -> dict:
        """An order whose refund is rejected and whose shipment fails: it needs a person."""
        body = self.order_body(sku, payment_token="tok_refundFail")
        body["shipping_address"]["country"] = "AQ"
        return body

    def place(self, body: dict, **headers) -> dict:
        response = self.http.post(self.url("order_svc", "/orders"), json=body, headers=headers)
        assert response.status_code == 202, response.text
        return response.json()

    def order(self, order_id: str) -> dict:
        return self.http.get(self.url("order_svc", f"/orders/{order_id}")).json()

    def saga(self, saga_id: str) -> dict | None:
        response = self.http.get(self.url("orchestrator", f"/sagas/{saga_id}"))
        return response.json() if response.status_code == 200 else None

    def settled(self, placed: dict, timeout: float = 30) -> tuple[dict, dict]:
        """Wait until the saga is final and the order reflects it."""
        final = {"completed", "compensated", "needs_intervention"}
        saga = eventually(lambda: (s := self.saga(placed["saga_id"])) and s["status"] in final and s,
                          timeout=timeout, what=f"saga {placed['saga_id']} final")
        expected = "confirmed" if saga["status"] == "completed" else "cancelled"
        order = eventually(lambda: (o := self.order(placed["order_id"]))["status"] == expected and o,
                           timeout=timeout, what=f"order {expected}")
        return order, saga

    def stock(self, sku: str) -> dict:
        return self.http.get(self.url("inventory_svc", f"/stock/{sku}")).json()

    def payments(self, order_id: str) -> dict:
        return self.http.get(self.url("payment_svc", "/payments"), params={"order_id": order_id}).json()

    def shipments(self, order_id: str) -> list[dict]:
        return self.http.get(self.url("fulfillment_svc", "/shipments"), params={"order_id": order_id}).json()

    def notifications(self, order_id: str) -> list[dict]:
        return self.http.get(self.url("notification_svc", "/notifications"), params={"order_id": order_id}).json()

    def assert_books_balanced(self, order_id: str, sku: str, start_available: int) -> None:
        """After a compensated saga: stock back, refunds equal charges, no active shipment."""
        assert self.stock(sku) == {"sku": sku, "available": start_available, "reserved": 0}
        payments = self.payments(order_id)
        assert Decimal(payments["charged"]) == Decimal(payments["refunded"])
        assert not [s for s in self.shipments(order_id) if s["status"] in ("scheduled", "dispatched")]

    def drain(self, queue_url: str, wait: int = 1) -> list[dict]:
        sqs = self.stack.client("sqs")
        bodies = []
        while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
                                              MessageAttributeNames=["All"]).get("Messages"):
            for message in messages:
                bodies.append(message)
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return bodies


@pytest.fixture(scope="session")
def shop(stack) -> Shop:
    return Shop(stack)


@pytest.fixture(scope="session")
def order_events(stack) -> str:
    """A queue subscribed to the order-events topic, as a downstream consumer would have."""
    sqs, sns = stack.client("sqs"), stack.client("sns")
    url = sqs.create_queue(QueueName=f"{stack.prefix}-test-order-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    account = stack.client("sts").get_caller_identity()["Account"]
    topic = f"arn:aws:sns:{stack.aws_environment()['AWS_REGION']}:{account}:{Naming(stack.prefix).physical(ORDER_EVENTS)}"
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return url


def bodies(messages: list[dict]) -> list[dict]:
    return [json.loads(m["Body"]) for m in messages]
