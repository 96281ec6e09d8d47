"""Prometheus metrics shared by every service (exposed at ``/metrics``)."""
from prometheus_client import Counter, Gauge, Histogram

MESSAGES_HANDLED = Counter("messages_handled_total", "Messages handled", ["service", "message_type", "outcome"])
MESSAGES_DEAD_LETTERED = Counter(
    "messages_dead_lettered_total", "Messages left for the dead-letter queue (malformed or unhandled)", ["service", "queue"]
)
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Unpublished outbox rows", ["service"])
OUTBOX_OLDEST_AGE = Gauge("outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished outbox row", ["service"])
SAGAS = Counter("sagas_total", "Saga lifecycle transitions", ["event"])
STEP_LATENCY = Histogram(
    "saga_step_latency_seconds", "Time from a step's command to its reply", ["step", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
