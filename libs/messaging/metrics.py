"""Metrics shared by every service: Prometheus (exposed at ``/metrics``) and CloudWatch.

Code records through the functions below, which update both; CloudWatch receives the
saga-level subset named in :mod:`cloudwatch`, with the service's name as dimension.
"""

from prometheus_client import Counter, Gauge, Histogram

from . import cloudwatch
from .aws import AWS_REQUESTS as AWS_REQUESTS  # re-exported: every metric is named here

MESSAGES_HANDLED = Counter("messages_handled_total", "Messages handled", ["service", "message_type", "outcome"])
MESSAGES_LEFT = Counter(
    "messages_left_total", "Messages handed back for another process (one running another release)", ["service", "queue"]
)
MESSAGES_DEAD_LETTERED = Counter(
    "messages_dead_lettered_total", "Messages left for the dead-letter queue (malformed or unhandled)", ["service", "queue"]
)
MESSAGES_REFUSED = Counter(
    "messages_refused_total",
    "Messages refused for who sent them: a sender the queue does not take, or a reply that answers no command",
    ["service", "reason"],
)
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Unpublished outbox rows", ["service"])
OUTBOX_OLDEST_AGE = Gauge("outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished outbox row", ["service"])
SAGAS = Counter("sagas_total", "Saga lifecycle transitions", ["event"])
SAGA_VERSION_UNKNOWN = Counter(
    "saga_version_unknown_total",
    "Messages of sagas whose definition version this orchestrator does not run, left for one that does",
    ["definition", "version"],
)
STEP_LATENCY = Histogram(
    "saga_step_latency_seconds",
    "Time from a step's command to its reply",
    ["step", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

CLOUDWATCH = cloudwatch.Recorder()
"""This process's CloudWatch metrics until the service's sink sends them. A process runs one
service, which the sink stamps on every metric as the ``Service`` dimension."""

SAGA_EVENTS = {
    "started": "SagasStarted",
    "completed": "SagasCompleted",
    "compensated": "SagasCompensated",
    "needs_intervention": "SagasNeedingIntervention",
}
"""``sagas_total`` event -> CloudWatch count."""


def saga_event(event: str) -> None:
    """A saga started or reached ``completed``, ``compensated`` or ``needs_intervention``."""
    SAGAS.labels(event).inc()
    CLOUDWATCH.count(SAGA_EVENTS[event])


def step_finished(step: str, outcome: str, seconds: float) -> None:
    """A step's command was answered (or timed out) ``seconds`` after it was sent."""
    STEP_LATENCY.labels(step, outcome).observe(seconds)
    CLOUDWATCH.observe(cloudwatch.STEP_LATENCY, seconds * 1000, **{cloudwatch.STEP_DIMENSION: step})


def sagas_awaiting_intervention(count: int) -> None:
    """How many sagas are in ``needs_intervention`` now (sampled from the saga table)."""
    CLOUDWATCH.gauge("SagasAwaitingIntervention", count)


def sagas_of_versions_not_run(count: int) -> None:
    """How many unfinished sagas started on a version this process does not run (sampled):
    a replica that runs them reports 0, so the alarm's minimum across replicas is above 0 only
    when no replica runs them, and their deadlines then wait for one."""
    CLOUDWATCH.gauge("SagasOfVersionsNotRun", count)


def outbox_backlog(service: str, count: int, oldest_age_seconds: float) -> None:
    """Unpublished outbox rows and the age of the oldest, as the relay last counted them."""
    OUTBOX_BACKLOG.labels(service).set(count)
    OUTBOX_OLDEST_AGE.labels(service).set(oldest_age_seconds)
    CLOUDWATCH.gauge("OutboxBacklog", count)
    CLOUDWATCH.gauge("OutboxOldestAgeSeconds", oldest_age_seconds)


def dead_lettered(service: str, queue: str) -> None:
    """A message was received for the last time without being handled: SQS dead-letters it next."""
    MESSAGES_DEAD_LETTERED.labels(service, queue).inc()
    CLOUDWATCH.count("MessagesDeadLettered")


def refused(service: str, reason: str) -> None:
    """A message was refused for its sender or its causation (a forgery, a replayed or misrouted
    reply): it changed nothing. CloudWatch alarms on any (``MessagesRefused``)."""
    MESSAGES_REFUSED.labels(service, reason).inc()
    CLOUDWATCH.count("MessagesRefused")
