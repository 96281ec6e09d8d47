"""The whole system, started once per test session: every service as its own process,
PostgreSQL, and a moto server (or ``AWS_ENDPOINT_URL`` if set, where Terraform creates each
stack's queues and topics)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal

import httpx
import pytest

from contracts.topology import ORDER_EVENTS, Naming
from stack import terraform
from stack.infra import free_port
from stack.runner import Stack
from stack.services import SERVICES
from tests import factories
from tests.conftest import USER_AWS_ENDPOINT, eventually

OPERATOR_TOKEN = "test-operator-token"
PREVIOUS_OPERATOR_TOKEN = "test-operator-token-before-rotation"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

# Stacks a session starts on a given endpoint: the shared one, and test_delivery's doubled delivery.
STACKS_PER_SESSION = 2


@pytest.fixture(scope="session")
def topologies(tmp_path_factory):
    """On AWS_ENDPOINT_URL, the Terraform of every stack of the session applied side by side at the
    start (one apply takes ~90 s on LocalStack, mostly waiting); None on a moto server of our own."""
    if not USER_AWS_ENDPOINT:
        yield None
        return
    prepared = terraform.Prepared(USER_AWS_ENDPOINT, tmp_path_factory.mktemp("terraform"), STACKS_PER_SESSION)
    yield prepared
    prepared.close()


def _stack(workdir, postgres_server, topologies=None, *, replicas: dict[str, int] | None = None, **env) -> Stack:
    return Stack(
        workdir=workdir,
        replicas=replicas or {},
        database_url=postgres_server,
        endpoint=USER_AWS_ENDPOINT,
        **({"prefix": topologies.take()} if topologies else {}),
        ports={s.module: free_port() for s in SERVICES},
        env={
            "SAGA_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "SAGA_OPERATOR_TOKEN_PREVIOUS": PREVIOUS_OPERATOR_TOKEN,
            "RELAY_POLL_INTERVAL": "0.5",
            "CONSUMER_WAIT_SECONDS": "1",
            "METRICS_PUBLISH_INTERVAL": "2",
            "ORCHESTRATOR_INTERVENTION_COUNT_INTERVAL": "2",
            # Past the 10 s visibility timeout of a StartOrderSaga taken by a killed orchestrator.
            "ORDER_SAGA_START_BOUND": "25",
            "ORDER_STRANDED_CHECK_INTERVAL": "1",
            **env,
        },
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory, postgres_server, topologies):
    with _stack(tmp_path_factory.mktemp("e2e"), postgres_server, topologies) as running:
        yield running


class Shop:
    """The system as a user sees it: HTTP APIs, plus the emulator for queues."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = httpx.Client(timeout=10)
        self.operator = httpx.Client(timeout=10, headers=OPERATOR)

    def url(self, module: str, path: str) -> str:
        return self.stack.url(module) + path

    def new_sku(self, available: int) -> str:
        sku = f"SKU-{uuid.uuid4().hex[:10].upper()}"
        assert self.operator.put(self.url("inventory_svc", f"/stock/{sku}"), json={"available": available}).status_code == 200
        return sku

    def order_body(self, sku: str, quantity: int = 2, **overrides) -> dict:
        return factories.order_body(sku, quantity, **overrides)

    def refund_failure_body(self, sku: str) -> dict:
        """An order whose refund is rejected and whose shipment fails: it needs a person."""
        return self.order_body(sku, payment_token="tok_refundFail", country="AQ")

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
        saga = eventually(
            lambda: (s := self.saga(placed["saga_id"])) and s["status"] in final and s,
            timeout=timeout,
            what=f"saga {placed['saga_id']} final",
        )
        expected = "confirmed" if saga["status"] == "completed" else "cancelled"
        order = eventually(
            lambda: (o := self.order(placed["order_id"]))["status"] == expected and o, timeout=timeout, what=f"order {expected}"
        )
        return order, saga

    def stock(self, sku: str) -> dict:
        return self.operator.get(self.url("inventory_svc", f"/stock/{sku}")).json()

    def payments(self, order_id: str) -> dict:
        return self.operator.get(self.url("payment_svc", "/payments"), params={"order_id": order_id}).json()

    def shipments(self, order_id: str) -> list[dict]:
        return self.operator.get(self.url("fulfillment_svc", "/shipments"), params={"order_id": order_id}).json()

    def notifications(self, order_id: str) -> list[dict]:
        return self.operator.get(self.url("notification_svc", "/notifications"), params={"order_id": order_id}).json()

    def assert_books_balanced(self, order_id: str, sku: str, start_available: int) -> None:
        """After a compensated saga: stock back, refunds equal charges, no active shipment."""
        assert self.stock(sku) == {"sku": sku, "available": start_available, "reserved": 0}
        payments = self.payments(order_id)
        assert Decimal(payments["charged"]) == Decimal(payments["refunded"])
        assert not [s for s in self.shipments(order_id) if s["status"] in ("scheduled", "dispatched")]

    def drain(self, queue_url: str, wait: int = 1) -> list[dict]:
        sqs = self.stack.client("sqs")
        bodies = []
        while messages := sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait, MessageAttributeNames=["All"]
        ).get("Messages"):
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


def run_sagactl(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """``sagactl`` against ``stack``'s orchestrator with the operator token, as an operator runs it."""
    env = os.environ | {"SAGA_API_URL": stack.url("orchestrator"), "SAGA_OPERATOR_TOKEN": OPERATOR_TOKEN, "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env=env, capture_output=True, text=True, timeout=120)


def sagactl(stack: Stack, *args: str) -> str:
    """What ``sagactl`` printed; fails the test if it did not exit 0."""
    result = run_sagactl(stack, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
