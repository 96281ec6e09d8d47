"""The saga-level metrics this system sends to CloudWatch.

The names are a contract between the code that emits them and the dashboard and alarms in
``infra/``; a test checks that every metric the dashboard names is one listed here.

Code records into a :class:`Recorder` (``metrics.CLOUDWATCH``, one per process like the
Prometheus registry) and never waits on the network: a sink drains it once per period. On
ECS the sink writes Embedded Metric Format records to stdout, which the awslogs driver ships
and CloudWatch turns into metrics; elsewhere (a laptop, moto, LocalStack) it sends one
``PutMetricData`` per period. ``METRICS_SINK`` chooses (``auto``, ``emf``, ``cloudwatch``,
``off``); ``METRICS_PUBLISH_INTERVAL`` is the period (60 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from botocore.config import Config

from .aws import session

log = structlog.get_logger("cloudwatch")

NAMESPACE = "OrderSaga"
SERVICE_DIMENSION = "Service"
STEP_DIMENSION = "Step"

COUNTS = (
    "SagasStarted",
    "SagasCompleted",
    "SagasCompensated",
    "SagasNeedingIntervention",
    "MessagesDeadLettered",
    "MessagesRefused",
)
"""Counts per period (unit Count, summed)."""

GAUGES = ("SagasAwaitingIntervention", "SagasOfVersionsNotRun", "OutboxBacklog", "OutboxOldestAgeSeconds")
"""Sampled values (the alarms use their maximum)."""

STEP_LATENCY = "StepLatency"
"""Milliseconds from a step's command to its reply, with the extra dimension ``Step``."""

METRIC_NAMES: frozenset[str] = frozenset((*COUNTS, *GAUGES, STEP_LATENCY))

UNITS = {
    **dict.fromkeys(COUNTS, "Count"),
    "SagasAwaitingIntervention": "Count",
    "SagasOfVersionsNotRun": "Count",
    "OutboxBacklog": "Count",
    "OutboxOldestAgeSeconds": "Seconds",
    STEP_LATENCY: "Milliseconds",
}

MAX_VALUES_PER_DATUM = 150
"""PutMetricData takes at most 150 distinct values in one datum's ``Values``."""
MAX_DATUMS_PER_REQUEST = 1000
"""PutMetricData takes at most 1000 datums in one request; also the cap on what is kept for a retry."""

Dimensions = tuple[tuple[str, str], ...]
Key = tuple[str, Dimensions]


def significant(value: float, digits: int = 3) -> float:
    """``value`` rounded to ``digits`` significant digits.

    Latencies are kept as a value -> count table; rounding bounds its size (at most about
    900 entries per power of ten) whatever the traffic, at a relative error of 0.5 %, far
    below what a p99 needs.
    """
    if value <= 0 or not math.isfinite(value):
        return 0.0
    return round(value, digits - 1 - math.floor(math.log10(value)))


@dataclass
class StatisticSet:
    """Minimum, maximum, sum and count of a gauge's samples: constant size however many."""

    minimum: float
    maximum: float
    total: float
    samples: int = 1

    @classmethod
    def of(cls, value: float) -> StatisticSet:
        return cls(value, value, value)

    def add(self, other: StatisticSet) -> None:
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.total += other.total
        self.samples += other.samples


def _key(name: str, dimensions: dict[str, str]) -> Key:
    if name not in METRIC_NAMES:
        raise ValueError(f"{name} is not one of cloudwatch.METRIC_NAMES")
    return name, tuple(sorted(dimensions.items()))


@dataclass
class Period:
    """What one process recorded during one period. Pure; its size depends on the metric
    names and dimensions seen, not on how many values were recorded."""

    counts: dict[Key, float] = field(default_factory=dict)
    gauges: dict[Key, StatisticSet] = field(default_factory=dict)
    distributions: dict[Key, Counter[float]] = field(default_factory=dict)

    def count(self, name: str, value: float = 1, **dimensions: str) -> None:
        key = _key(name, dimensions)
        self.counts[key] = self.counts.get(key, 0) + value

    def gauge(self, name: str, value: float, **dimensions: str) -> None:
        key = _key(name, dimensions)
        if key in self.gauges:
            self.gauges[key].add(StatisticSet.of(value))
        else:
            self.gauges[key] = StatisticSet.of(value)

    def observe(self, name: str, value: float, **dimensions: str) -> None:
        self.distributions.setdefault(_key(name, dimensions), Counter())[significant(value)] += 1

    def __bool__(self) -> bool:
        return bool(self.counts or self.gauges or self.distributions)

    def datums(self, service: str, timestamp: datetime) -> list[dict[str, Any]]:
        """The period as PutMetricData ``MetricData``: counts as one summed value, gauges as
        statistic sets, distributions as ``Values``/``Counts`` so CloudWatch computes
        percentiles. Every datum carries the ``Service`` dimension."""
        out = []

        def datum(key: Key, **fields: Any) -> dict[str, Any]:
            name, dimensions = key
            return {
                "MetricName": name,
                "Timestamp": timestamp,
                "Unit": UNITS[name],
                "Dimensions": [{"Name": k, "Value": v} for k, v in ((SERVICE_DIMENSION, service), *dimensions)],
                **fields,
            }

        for key, total in self.counts.items():
            out.append(datum(key, Value=total))
        for key, stats in self.gauges.items():
            out.append(
                datum(
                    key,
                    StatisticValues={
                        "SampleCount": stats.samples,
                        "Sum": stats.total,
                        "Minimum": stats.minimum,
                        "Maximum": stats.maximum,
                    },
                )
            )
        for key, table in self.distributions.items():
            values = sorted(table.items())
            for start in range(0, len(values), MAX_VALUES_PER_DATUM):
                chunk = values[start : start + MAX_VALUES_PER_DATUM]
                out.append(datum(key, Values=[v for v, _ in chunk], Counts=[n for _, n in chunk]))
        return out


class Recorder:
    """Collects metrics between two flushes; recording is a dictionary update, never I/O.

    It records only while a sink drains it (``active``), so a process without one (tests,
    ``METRICS_SINK=off``) keeps nothing. Counts that were ``declare``d are sent every period,
    as 0 when nothing happened, so dashboards and alarms see a quiet service as quiet rather
    than as missing data.
    """

    def __init__(self) -> None:
        self.active = False
        self._period = Period()
        self._declared: set[Key] = set()

    def declare(self, *names: str, **dimensions: str) -> None:
        self._declared.update(_key(name, dimensions) for name in names)

    def count(self, name: str, value: float = 1, **dimensions: str) -> None:
        if self.active:
            self._period.count(name, value, **dimensions)

    def gauge(self, name: str, value: float, **dimensions: str) -> None:
        if self.active:
            self._period.gauge(name, value, **dimensions)

    def observe(self, name: str, value: float, **dimensions: str) -> None:
        if self.active:
            self._period.observe(name, value, **dimensions)

    def take(self) -> Period:
        """The period so far, with the declared counts; recording starts a new one."""
        period, self._period = self._period, Period()
        for key in self._declared:
            period.counts.setdefault(key, 0)
        return period


Send = Callable[[list[dict[str, Any]]], Awaitable[None]]


class Publisher:
    """Drains a :class:`Recorder` every ``interval`` seconds into ``send``, once per period.

    One ``send`` per period at most: datums a failed send could not deliver are kept and go
    with the next period's, in the same request. What is kept is capped at
    ``MAX_DATUMS_PER_REQUEST`` (oldest dropped, with a warning), so an unreachable endpoint
    costs bounded memory. Recording never waits for this loop.
    """

    def __init__(
        self,
        recorder: Recorder,
        send: Send,
        *,
        service: str,
        interval: float = 60,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._recorder = recorder
        self._send = send
        self._service = service
        self._interval = interval
        self._clock = clock
        self._pending: list[dict[str, Any]] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``interval`` until ``stop`` is set, then once more, so that what was
        recorded while the service stopped is sent too."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
            if not stop.is_set():
                await self.flush()
        await self.flush()

    async def flush(self) -> int:
        """Send what was recorded since the last flush (and what failed then); returns the datums sent."""
        self._pending += self._recorder.take().datums(self._service, self._clock())
        overflow = len(self._pending) - MAX_DATUMS_PER_REQUEST
        if overflow > 0:
            log.warning("metrics_dropped", service=self._service, datums=overflow)
            del self._pending[:overflow]
        if not self._pending:
            return 0
        batch, self._pending = self._pending, []
        try:
            await self._send(batch)
        except Exception as error:  # noqa: BLE001 - metrics must never take a service down; retried next period
            rejected = _rejected(error)
            log.warning(
                "metrics_publish_failed", service=self._service, datums=len(batch), retried=not rejected, error=str(error)[:300]
            )
            if not rejected:
                self._pending = batch + self._pending
            return 0
        return len(batch)


def _rejected(error: Exception) -> bool:
    """The endpoint refused the request itself (a 4xx other than throttling): sending the same
    datums again would fail again, and hold up every later period's with them."""
    response = getattr(error, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = response.get("Error", {}).get("Code", "")
    return 400 <= status < 500 and status != 429 and "Throttl" not in code


def put_metric_data(client: Any) -> Send:
    """A ``send`` that makes one PutMetricData call in the namespace ``OrderSaga``."""

    async def send(datums: list[dict[str, Any]]) -> None:
        await client.put_metric_data(Namespace=NAMESPACE, MetricData=datums)

    return send


async def write_emf(datums: list[dict[str, Any]]) -> None:
    """Write the datums as Embedded Metric Format records on stdout, one record per set of
    dimensions, through ``aws-embedded-metrics`` (its ``Local`` environment is stdout).

    EMF has no statistic sets or counts: a gauge is written as its maximum (what the alarms
    use), and each latency value is repeated as often as it was observed.
    """
    from aws_embedded_metrics.logger.metrics_logger_factory import create_metrics_logger

    by_dimensions: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
    for datum in datums:
        key = tuple((d["Name"], d["Value"]) for d in datum["Dimensions"])
        by_dimensions.setdefault(key, []).append(datum)
    for dimensions, group in by_dimensions.items():
        logger = create_metrics_logger()
        logger.set_namespace(NAMESPACE)
        logger.set_dimensions(dict(dimensions))  # no default dimensions (LogGroup, ServiceType...)
        logger.set_timestamp(group[0]["Timestamp"])
        for datum in group:
            for value in _emf_values(datum):
                logger.put_metric(datum["MetricName"], value, datum["Unit"])
        await logger.flush()


def _emf_values(datum: dict[str, Any]) -> list[float]:
    if "Values" in datum:
        return [v for v, n in zip(datum["Values"], datum["Counts"], strict=True) for _ in range(int(n))]
    if "StatisticValues" in datum:
        return [datum["StatisticValues"]["Maximum"]]
    return [datum["Value"]]


Sink = Literal["auto", "emf", "cloudwatch", "off"]


def resolve_sink(sink: Sink, environ: dict[str, str] | None = None) -> Literal["emf", "cloudwatch", "off"]:
    """``auto`` is ``emf`` on ECS (where the awslogs driver ships stdout), ``cloudwatch`` elsewhere."""
    if sink != "auto":
        return sink
    env: Mapping[str, str] = os.environ if environ is None else environ
    return "emf" if env.get("ECS_CONTAINER_METADATA_URI_V4") else "cloudwatch"


@contextlib.asynccontextmanager
async def publishing(recorder: Recorder, *, service: str, sink: Sink, interval: float) -> AsyncIterator[None]:
    """Run the chosen sink for the body's duration, and flush once more when it ends."""
    chosen = resolve_sink(sink)
    if chosen == "off":
        yield
        return
    async with _sender(chosen) as send:
        publisher = Publisher(recorder, send, service=service, interval=interval)
        stop = asyncio.Event()
        recorder.active = True
        task = asyncio.create_task(publisher.run(stop), name="metrics")
        log.info("metrics_publishing", sink=chosen, interval=interval)
        try:
            yield
        finally:
            stop.set()
            try:
                await asyncio.wait_for(task, 15)  # the final flush; a dead endpoint must not hold up the stop
            except Exception:  # noqa: BLE001
                log.warning("metrics_final_flush_failed", service=service, exc_info=True)
            recorder.active = False


@contextlib.asynccontextmanager
async def _sender(sink: str) -> AsyncIterator[Send]:
    if sink == "emf":
        from aws_embedded_metrics.config import get_config

        config = get_config()
        if not os.environ.get("AWS_EMF_ENVIRONMENT"):
            config.environment = "local"  # stdout; the default probes for a CloudWatch agent instead

        yield write_emf
        return
    # Few retries: a failed period is simply sent again with the next one.
    client_config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=10)
    async with session().client("cloudwatch", config=client_config) as client:
        yield put_metric_data(client)
