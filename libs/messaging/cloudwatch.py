"""The saga-level metrics this system sends to CloudWatch.

The names are a contract between the code that emits them and the dashboard and alarms in
``infra/``; a test checks that every metric the dashboard names is one listed here.
"""
from __future__ import annotations

NAMESPACE = "OrderSaga"
SERVICE_DIMENSION = "Service"
STEP_DIMENSION = "Step"

COUNTS = ("SagasStarted", "SagasCompleted", "SagasCompensated", "SagasNeedingIntervention", "MessagesDeadLettered")
"""Counts per period (unit Count, summed)."""

GAUGES = ("SagasAwaitingIntervention", "OutboxBacklog", "OutboxOldestAgeSeconds")
"""Sampled values (the alarms use their maximum)."""

STEP_LATENCY = "StepLatency"
"""Milliseconds from a step's command to its reply, with the extra dimension ``Step``."""

METRIC_NAMES: frozenset[str] = frozenset((*COUNTS, *GAUGES, STEP_LATENCY))
