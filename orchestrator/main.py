"""Entry point: ``python -m orchestrator``."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import structlog
from fastapi import FastAPI

from contracts.topology import ORCHESTRATOR_COMMANDS, ORCHESTRATOR_REPLIES
from messaging import metrics
from messaging.service import Runtime, ServiceDefinition, create_app, serve

from . import api, console, repository, tables
from .cancellation_saga import cancellation_saga
from .engine import SagaDefinition, SagaRegistry
from .handlers import Orchestrator, fire_due_deadlines
from .order_saga import order_saga
from .settings import Settings

DEFINITIONS: tuple[SagaDefinition, ...] = (order_saga(), cancellation_saga())
"""Every saga the orchestrator runs; a new one is added here."""

log = structlog.get_logger("orchestrator")


IDLE_DEADLINE_CHECK = 2.0
"""Seconds between two looks for due deadlines when none is near. Every deadline is set at
least a few seconds ahead, so looking this often fires each on time; an idle orchestrator
does not query twice a second for nothing."""


async def _until_next_deadline(rt: Runtime, shortest: float) -> float:
    """How long the deadline worker may sleep: until the next deadline, within bounds."""
    try:
        async with rt.sessions() as session:
            upcoming = await repository.next_deadline(session)
    except Exception:  # noqa: BLE001 - the database is briefly down: look again soon
        return shortest
    if upcoming is None:
        return IDLE_DEADLINE_CHECK
    return min(max((upcoming - datetime.now(UTC)).total_seconds(), shortest), IDLE_DEADLINE_CHECK)


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    orchestrator = Orchestrator(SagaRegistry(*settings.timeouts.apply(*DEFINITIONS)))

    async def deadlines(rt: Runtime) -> None:
        """Fire expired step deadlines; they are in the database, so a restart loses none.

        Only deadlines up to what the reply consumer has read are judged: a reply that reached
        the queue in time wins, even if this process was down, restarting, or cut off from its
        database when the deadline passed (see ``ReadProgress``).
        """
        replies = rt.consumers[ORCHESTRATOR_REPLIES].progress
        waiting: dict = {}
        while not rt.stop.is_set():
            try:
                handled = await fire_due_deadlines(rt.sessions, orchestrator, rt.name, replies.read_until, waiting)
            except Exception:  # the database is briefly down: try again on the next tick
                log.exception("deadline_pass_failed")
                handled = 0
            if not handled:
                await asyncio.sleep(await _until_next_deadline(rt, settings.deadline_poll_interval))

    async def intervention_gauge(rt: Runtime) -> None:
        """Sample how many sagas wait for a person: the gauge the CloudWatch alarm watches."""
        metrics.CLOUDWATCH.declare(*metrics.SAGA_EVENTS.values())
        while not rt.stop.is_set():
            try:
                async with rt.sessions() as session:
                    metrics.sagas_awaiting_intervention(await repository.count(session, "needs_intervention"))
            except Exception:  # the database is briefly down: the next sample will tell
                log.warning("intervention_count_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rt.stop.wait(), settings.intervention_count_interval)

    definition = ServiceDefinition(
        name="orchestrator",
        package=__package__,
        metadata=tables.metadata,
        queues=(ORCHESTRATOR_COMMANDS, ORCHESTRATOR_REPLIES),
        handlers=orchestrator.handlers(),
        routers=(api.router, api.guarded, api.operator, console.router),
        workers=(deadlines, intervention_gauge),
    )
    app = create_app(definition, settings)
    app.state.orchestrator = orchestrator
    return app


def main() -> None:
    settings = Settings()
    serve(build_app(settings), settings)
