"""The PutMetricData publisher against the emulator: what is recorded can be read back."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import structlog.testing

from messaging import cloudwatch
from messaging.cloudwatch import NAMESPACE, Recorder
from stack import infra

pytestmark = pytest.mark.integration


def statistic(client, service: str, name: str, stat: str, **dimensions: str) -> list[float]:
    now = datetime.now(UTC)
    response = client.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": name,
                        "Dimensions": [
                            {"Name": "Service", "Value": service},
                            *({"Name": k, "Value": v} for k, v in dimensions.items()),
                        ],
                    },
                    "Period": 3600,
                    "Stat": stat,
                },
            }
        ],
        StartTime=now - timedelta(minutes=30),
        EndTime=now + timedelta(minutes=5),
    )
    return response["MetricDataResults"][0]["Values"]


async def test_recorded_metrics_reach_cloudwatch_in_periodic_batches_and_on_shutdown(emulator):
    service = f"it-{uuid.uuid4().hex[:8]}"
    recorder = Recorder()
    async with cloudwatch.publishing(recorder, service=service, sink="cloudwatch", interval=0.5):
        recorder.declare("MessagesDeadLettered")
        for _ in range(3):
            recorder.count("SagasStarted")
        for ms in (120, 120, 300):
            recorder.observe("StepLatency", ms, Step="process_payment")
        recorder.gauge("OutboxBacklog", 4)
        recorder.gauge("OutboxBacklog", 9)
        await asyncio.sleep(1.5)  # at least one period has been published
        recorder.count("SagasStarted", 2)  # only the flush at the end sends these
    assert not recorder.active

    client = infra.client("cloudwatch", emulator)
    assert sum(statistic(client, service, "SagasStarted", "Sum")) == 5
    assert sum(statistic(client, service, "StepLatency", "SampleCount", Step="process_payment")) == 3
    assert statistic(client, service, "StepLatency", "Maximum", Step="process_payment") == [300]
    assert statistic(client, service, "StepLatency", "Minimum", Step="process_payment") == [120]
    assert statistic(client, service, "OutboxBacklog", "Maximum") == [9]
    assert sum(statistic(client, service, "MessagesDeadLettered", "Sum")) == 0
    listed = client.list_metrics(Namespace=NAMESPACE, Dimensions=[{"Name": "Service", "Value": service}])["Metrics"]
    assert {m["MetricName"] for m in listed} == {"SagasStarted", "StepLatency", "OutboxBacklog", "MessagesDeadLettered"}


async def test_an_unreachable_endpoint_is_logged_and_retried_and_the_stop_still_ends(emulator, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{infra.free_port()}")  # nothing listens there
    recorder = Recorder()
    with structlog.testing.capture_logs() as logs:
        async with cloudwatch.publishing(recorder, service="unreachable", sink="cloudwatch", interval=0.2):
            for _ in range(1000):
                recorder.observe("StepLatency", 5, Step="reserve_inventory")
            await asyncio.sleep(0.5)
    assert not recorder.active
    failures = [e for e in logs if e["event"] == "metrics_publish_failed"]
    assert len(failures) >= 2 and all(e["retried"] and e["datums"] == 1 for e in failures)
