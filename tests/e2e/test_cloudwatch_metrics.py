"""The running system's saga metrics, read back from CloudWatch (the emulator's)."""

from __future__ import annotations

import pytest

from messaging.cloudwatch import METRIC_NAMES, NAMESPACE
from stack.services import SERVICES
from tests.conftest import eventually
from tests.integration.test_cloudwatch import statistic

pytestmark = pytest.mark.e2e


def test_cloudwatch_counts_the_sagas_that_ran_and_lists_every_metric(shop, stack):
    sku = shop.new_sku(20)
    placed = [shop.place(shop.order_body(sku)), shop.place(shop.order_body(sku)), shop.place(shop.refund_failure_body(sku))]
    statuses = sorted(shop.settled(p)[1]["status"] for p in placed)
    assert statuses == ["completed", "completed", "needs_intervention"]
    cloudwatch = stack.client("cloudwatch")

    def at_least(minimum: float, name: str, stat: str = "Sum", **dimensions: str):
        return lambda: (value := sum(statistic(cloudwatch, "orchestrator", name, stat, **dimensions))) >= minimum and value

    eventually(at_least(len(placed), "SagasStarted"), timeout=30, what="SagasStarted")
    eventually(at_least(2, "SagasCompleted"), timeout=30, what="SagasCompleted")
    eventually(at_least(1, "SagasNeedingIntervention"), timeout=30, what="SagasNeedingIntervention")
    eventually(at_least(1, "SagasAwaitingIntervention", "Maximum"), timeout=30, what="SagasAwaitingIntervention")
    eventually(
        at_least(len(placed), "StepLatency", "SampleCount", Step="process_payment"),
        timeout=30,
        what="StepLatency of process_payment",
    )

    def listed() -> dict[str, set[str]]:
        by_service: dict[str, set[str]] = {}
        for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=NAMESPACE):
            for metric in page["Metrics"]:
                service = {d["Name"]: d["Value"] for d in metric["Dimensions"]}["Service"]
                by_service.setdefault(service, set()).add(metric["MetricName"])
        return by_service

    def complete():
        by_service = listed()
        every_service = all(
            {"OutboxBacklog", "OutboxOldestAgeSeconds", "MessagesDeadLettered"} <= by_service.get(s.module, set())
            for s in SERVICES
        )
        return every_service and METRIC_NAMES <= by_service.get("orchestrator", set()) and by_service

    eventually(complete, timeout=30, what="every metric name listed for its services")
