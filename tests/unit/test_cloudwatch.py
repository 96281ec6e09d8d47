"""CloudWatch metrics: aggregation within a period, the publisher's schedule and retries, EMF output."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime

import pytest

from messaging import cloudwatch, metrics
from messaging.cloudwatch import METRIC_NAMES, Period, Publisher, Recorder
from messaging.settings import ServiceSettings

AT = datetime(2026, 1, 1, tzinfo=UTC)


def by_name(datums: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for datum in datums:
        out.setdefault(datum["MetricName"], []).append(datum)
    return out


def dimensions(datum: dict) -> dict[str, str]:
    return {d["Name"]: d["Value"] for d in datum["Dimensions"]}


def test_a_period_sums_counts_keeps_gauge_statistics_and_latency_values_with_their_counts():
    period = Period()
    for _ in range(3):
        period.count("SagasStarted")
    period.count("SagasCompleted", 2)
    for value in (4, 10, 1):
        period.gauge("OutboxBacklog", value)
    for ms in (120, 120, 95.04, 3000):
        period.observe("StepLatency", ms, Step="process_payment")
    period.observe("StepLatency", 7, Step="reserve_inventory")

    datums = by_name(period.datums("orchestrator", AT))

    assert [d["Value"] for d in datums["SagasStarted"]] == [3]
    assert [d["Value"] for d in datums["SagasCompleted"]] == [2]
    [backlog] = datums["OutboxBacklog"]
    assert backlog["StatisticValues"] == {"SampleCount": 3, "Sum": 15, "Minimum": 1, "Maximum": 10}
    latency = {dimensions(d)["Step"]: d for d in datums["StepLatency"]}
    assert latency["process_payment"]["Values"] == [95.0, 120, 3000] and latency["process_payment"]["Counts"] == [1, 2, 1]
    assert latency["reserve_inventory"]["Values"] == [7] and latency["reserve_inventory"]["Unit"] == "Milliseconds"
    for datum in period.datums("orchestrator", AT):
        assert dimensions(datum)["Service"] == "orchestrator" and datum["Timestamp"] == AT


def test_latency_tables_stay_small_and_split_into_datums_cloudwatch_accepts():
    period = Period()
    rng = random.Random(7)
    observations = 50_000
    for _ in range(observations):
        period.observe("StepLatency", rng.lognormvariate(5, 1.5), Step="fulfill_order")
    table = period.distributions[("StepLatency", (("Step", "fulfill_order"),))]
    assert len(table) < 6000  # about 900 values per power of ten, whatever the traffic
    datums = period.datums("orchestrator", AT)
    assert all(len(d["Values"]) == len(d["Counts"]) <= cloudwatch.MAX_VALUES_PER_DATUM for d in datums)
    assert sum(sum(d["Counts"]) for d in datums) == observations
    assert len(datums) < cloudwatch.MAX_DATUMS_PER_REQUEST


def test_rounding_keeps_three_significant_digits():
    assert [cloudwatch.significant(v) for v in (0.012345, 1234.5, 99.96, 0, -3)] == [0.0123, 1230, 100, 0, 0]


def test_only_the_contract_names_can_be_recorded():
    with pytest.raises(ValueError, match="METRIC_NAMES"):
        Period().count("SagasStartd")


def test_every_contract_name_is_recorded_by_the_metrics_functions_the_code_calls():
    recorder = Recorder()
    recorder.active = True
    original, metrics.CLOUDWATCH = metrics.CLOUDWATCH, recorder
    try:
        for event in metrics.SAGA_EVENTS:
            metrics.saga_event(event)
        metrics.step_finished("reserve_inventory", "succeeded", 0.2)
        metrics.sagas_awaiting_intervention(1)
        metrics.sagas_of_versions_not_run(0)
        metrics.outbox_backlog("inventory_svc", 3, 1.5)
        metrics.dead_lettered("inventory_svc", "inventory-commands")
        metrics.refused("orchestrator", "reply")
    finally:
        metrics.CLOUDWATCH = original
    assert {d["MetricName"] for d in recorder.take().datums("x", AT)} == METRIC_NAMES


def test_a_recorder_keeps_nothing_without_a_sink_and_sends_declared_counts_as_zero():
    recorder = Recorder()
    recorder.count("SagasStarted")
    assert not recorder.take()
    recorder.declare("MessagesDeadLettered")
    recorder.active = True
    recorder.gauge("OutboxBacklog", 0)
    datums = by_name(recorder.take().datums("payment_svc", AT))
    assert [d["Value"] for d in datums["MessagesDeadLettered"]] == [0]
    recorder.count("MessagesDeadLettered")
    assert [d["Value"] for d in by_name(recorder.take().datums("payment_svc", AT))["MessagesDeadLettered"]] == [1]


class FlakyCloudWatch:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[tuple[float, list[dict]]] = []

    async def send(self, datums: list[dict]) -> None:
        self.calls.append((time.monotonic(), datums))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("endpoint unreachable")


async def test_a_failed_publish_is_sent_again_with_the_next_period_in_one_call():
    recorder, cw = Recorder(), FlakyCloudWatch(failures=1)
    recorder.active = True
    publisher = Publisher(recorder, cw.send, service="order_svc", clock=lambda: AT)
    recorder.count("SagasStarted", 2)
    assert await publisher.flush() == 0
    recorder.count("SagasStarted", 5)
    assert await publisher.flush() == 2
    assert len(cw.calls) == 2
    assert sorted(d["Value"] for d in cw.calls[1][1]) == [2, 5]
    assert await publisher.flush() == 0 and len(cw.calls) == 2  # nothing new, no call


async def test_a_request_the_endpoint_refuses_is_dropped_not_retried_forever():
    from botocore.exceptions import ClientError

    refused = ClientError(
        {"Error": {"Code": "InvalidParameterValue", "Message": "bad"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        "PutMetricData",
    )
    throttled = ClientError(
        {"Error": {"Code": "Throttling", "Message": "slow down"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutMetricData"
    )
    errors = [refused, throttled, None]
    sent: list[list[dict]] = []

    async def send(datums):
        sent.append(datums)
        if error := errors.pop(0):
            raise error

    recorder = Recorder()
    recorder.active = True
    publisher = Publisher(recorder, send, service="order_svc", clock=lambda: AT)
    for value in (1, 2, 3):
        recorder.count("SagasStarted", value)
        await publisher.flush()
    assert [[d["Value"] for d in datums] for datums in sent] == [[1], [2], [2, 3]]


async def test_what_waits_for_a_retry_is_capped_so_an_outage_costs_bounded_memory():
    recorder, cw = Recorder(), FlakyCloudWatch(failures=1000)
    recorder.active = True
    publisher = Publisher(recorder, cw.send, service="order_svc", clock=lambda: AT)
    for period in range(30):
        for step in range(100):
            recorder.observe("StepLatency", period, Step=f"s{step}")
        await publisher.flush()
    assert len(cw.calls) == 30
    assert max(len(datums) for _, datums in cw.calls) == cloudwatch.MAX_DATUMS_PER_REQUEST
    assert cw.calls[-1][1][-1]["Values"] == [29]  # the newest kept, the oldest dropped


async def test_the_publisher_calls_at_most_once_per_interval_and_flushes_when_stopped():
    recorder, cw = Recorder(), FlakyCloudWatch()
    recorder.active = True
    interval = 0.25
    stop = asyncio.Event()
    task = asyncio.create_task(Publisher(recorder, cw.send, service="order_svc", interval=interval).run(stop))
    started = time.monotonic()
    while time.monotonic() - started < 1.4:
        recorder.count("SagasStarted")  # traffic all the time
        await asyncio.sleep(0.01)
    recorder.count("SagasCompleted")
    stop.set()
    await asyncio.wait_for(task, 2)
    times = [at for at, _ in cw.calls]
    assert 4 <= len(times) <= 1.4 / interval + 1
    assert all(b - a >= interval * 0.9 for a, b in zip(times, times[1:-1], strict=False))  # the last is the stop's flush
    assert "SagasCompleted" in {d["MetricName"] for d in cw.calls[-1][1]}
    total = sum(d["Value"] for _, datums in cw.calls for d in datums if d["MetricName"] == "SagasStarted")
    assert total > 20


def test_the_default_period_is_a_minute_and_the_sink_follows_the_environment(monkeypatch):
    settings = ServiceSettings(database_url="postgresql://x@h/db", port=1)
    assert settings.metrics_publish_interval == 60 and settings.metrics_sink == "auto"
    assert cloudwatch.resolve_sink("auto", {"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x"}) == "emf"
    assert cloudwatch.resolve_sink("auto", {}) == "cloudwatch"
    assert cloudwatch.resolve_sink("off", {"ECS_CONTAINER_METADATA_URI_V4": "x"}) == "off"
    monkeypatch.setenv("METRICS_SINK", "carrier-pigeon")
    with pytest.raises(ValueError):
        ServiceSettings(database_url="postgresql://x@h/db", port=1)


async def test_emf_records_on_stdout_carry_the_namespace_dimensions_and_values(capsys, monkeypatch):
    from aws_embedded_metrics.config import get_config

    monkeypatch.setattr(get_config(), "environment", "local")
    now = datetime.now(UTC).replace(microsecond=0)
    period = Period()
    period.count("SagasStarted", 4)
    period.gauge("SagasAwaitingIntervention", 2)
    period.gauge("SagasAwaitingIntervention", 3)
    period.observe("StepLatency", 80, Step="reserve_inventory")
    period.observe("StepLatency", 80, Step="reserve_inventory")
    await cloudwatch.write_emf(period.datums("orchestrator", now))

    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_dimensions = {tuple(r["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]): r for r in records}
    service, step = by_dimensions[("Service",)], by_dimensions[("Service", "Step")]
    assert service["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "OrderSaga"
    assert service["Service"] == "orchestrator" and service["SagasStarted"] == 4
    assert service["SagasAwaitingIntervention"] == 3
    assert step["Step"] == "reserve_inventory" and step["StepLatency"] == [80, 80]
    assert {"Name": "StepLatency", "Unit": "Milliseconds"} in step["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    assert service["_aws"]["Timestamp"] == int(now.timestamp() * 1000)


async def test_the_emf_sink_writes_what_was_recorded_to_stdout_when_the_service_stops(capsys, monkeypatch):
    monkeypatch.delenv("AWS_EMF_ENVIRONMENT", raising=False)
    recorder = Recorder()
    async with cloudwatch.publishing(recorder, service="payment_svc", sink="emf", interval=60):
        recorder.count("MessagesDeadLettered")
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert record["Service"] == "payment_svc" and record["MessagesDeadLettered"] == 1
