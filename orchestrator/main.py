"""Entry point: ``python -m orchestrator``."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import structlog
from fastapi import FastAPI

from contracts.topology import ORCHESTRATOR_COMMANDS, ORCHESTRATOR_REPLIES, Naming
from messaging import janitor, metrics
from messaging.backlog import QueueBacklog
from messaging.identity import Bootstrap
from messaging.service import Runtime, ServiceDefinition, create_app, serve

from . import api, console, operators, repository, tables
from .cancellation_saga import cancellation_saga
from .engine import SagaDefinition, SagaRegistry
from .handlers import CLOCK_MARGIN, Orchestrator, stage_deadline_checks
from .order_saga import order_saga
from .settings import Settings

DEFINITIONS: tuple[SagaDefinition, ...] = (order_saga(), order_saga(version=2), cancellation_saga())
"""Every saga (every version of it) this release runs; a new one is added here."""

log = structlog.get_logger("orchestrator")


IDLE_DEADLINE_CHECK = 2.0
"""Seconds between two looks for due deadlines when none is near. Every deadline is set at
least a few seconds ahead, so looking this often fires each on time; an idle orchestrator
does not query twice a second for nothing."""


async def _until_next_deadline(rt: Runtime, shortest: float, runs: list[tuple[str, int]]) -> float:
    """How long the deadline worker may sleep: until the next check is due, within bounds."""
    try:
        async with rt.sessions() as session:
            upcoming = await repository.next_check(session, CLOCK_MARGIN, runs)
    except Exception:  # noqa: BLE001 - the database is briefly down: look again soon
        return shortest
    if upcoming is None:
        return IDLE_DEADLINE_CHECK
    return min(max((upcoming - datetime.now(UTC)).total_seconds(), shortest), IDLE_DEADLINE_CHECK)


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    running = [d for d in DEFINITIONS if d.version in settings.run_versions.get(d.name, [d.version])]
    orchestrator = Orchestrator(SagaRegistry(*settings.timeouts.apply(*running), start=settings.start_versions))
    runs = [(d.name, d.version) for d in running]
    """The (definition, version)s this replica runs: it stages deadline checks for their sagas only."""

    async def deadlines(rt: Runtime) -> None:
        """Stage a deadline check for every saga whose deadline passed; deadlines are in the
        database, so a restart loses none. The checks are judged where the replies are, in
        each saga's FIFO group (``Orchestrator.check_deadlines``): a reply that reached the
        queue in time wins, whichever replica received it and whatever became of that replica.
        """
        while not rt.stop.is_set():
            try:
                staged = await stage_deadline_checks(rt.sessions, rt.name, runs)
            except Exception:  # the database is briefly down: try again on the next tick
                log.exception("deadline_pass_failed")
                staged = 0
            if not staged:
                await asyncio.sleep(await _until_next_deadline(rt, settings.deadline_poll_interval, runs))

    async def intervention_gauge(rt: Runtime) -> None:
        """Sample how many sagas wait for a person: the gauge the CloudWatch alarm watches."""
        metrics.CLOUDWATCH.declare(*metrics.SAGA_EVENTS.values())
        while not rt.stop.is_set():
            try:
                async with rt.sessions() as session:
                    metrics.sagas_awaiting_intervention(await repository.count(session, "needs_intervention"))
                    metrics.sagas_of_versions_not_run(await repository.count_not_run(session, runs))
            except Exception:  # the database is briefly down: the next sample will tell
                log.warning("intervention_count_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rt.stop.wait(), settings.intervention_count_interval)

    async def read_backlogs(rt: Runtime) -> None:
        orchestrator.backlog = QueueBacklog(rt.broker).waiting

    definition = ServiceDefinition(
        name="orchestrator",
        package=__package__,
        metadata=tables.metadata,
        naming=Naming,
        queues=(ORCHESTRATOR_COMMANDS, ORCHESTRATOR_REPLIES),
        handlers=orchestrator.handlers(),
        routers=(api.router, api.guarded, api.operator, api.admin, console.router),
        on_start=(read_backlogs,),
        workers=(deadlines, intervention_gauge),
        directory=lambda rt: operators.OperatorTable(rt.sessions, Bootstrap(settings.operator_tokens())),
        expiring=(
            janitor.Expiry(tables.console_sessions, "expires_at", timedelta(days=1)),
            janitor.Batched("sagas", repository.PURGE_FINISHED, timedelta(days=settings.saga_retention_days)),
            janitor.Expiry(tables.purged_sagas, "purged_at", timedelta(days=365)),
        ),
    )
    app = create_app(definition, settings)
    app.state.orchestrator = orchestrator
    return app


def main() -> None:
    settings = Settings()
    serve(build_app(settings), settings)
