"""Entry point: ``python -m orchestrator``."""
from __future__ import annotations

import asyncio

import structlog
from fastapi import FastAPI

from messaging.service import Runtime, ServiceDefinition, create_app, serve
from messaging.topology import ORCHESTRATOR_COMMANDS, ORCHESTRATOR_REPLIES
from messaging.uow import UnitOfWork

from . import api, repository, tables
from .engine import SagaEngine
from .handlers import Orchestrator, now
from .order_saga import order_saga
from .settings import Settings

log = structlog.get_logger("orchestrator")


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    orchestrator = Orchestrator(SagaEngine(order_saga(settings.timeouts)))

    async def deadlines(rt: Runtime) -> None:
        """Fire expired step deadlines; they are in the database, so a restart loses none.

        Each saga is handled in its own transaction, so one that fails (and is retried on the
        next tick) holds up no other.
        """
        # Replies that arrived while no orchestrator ran came in time: let the consumers
        # read them before the deadlines that expired meanwhile are judged.
        await asyncio.sleep(settings.deadline_startup_grace)
        while not rt.stop.is_set():
            handled = 0
            try:
                async with rt.sessions() as session:
                    due = await repository.due(session, now())
                for saga_id in due:
                    try:
                        async with UnitOfWork(rt.sessions, rt.name) as uow:
                            handled += await orchestrator.on_deadline(uow, saga_id)
                            await uow.commit()
                    except Exception:
                        log.exception("deadline_failed", saga_id=str(saga_id))
            except Exception:  # the database is briefly down: try again on the next tick
                log.exception("deadline_pass_failed")
            if not handled:
                await asyncio.sleep(settings.deadline_poll_interval)

    definition = ServiceDefinition(
        name="orchestrator", metadata=tables.metadata, queues=(ORCHESTRATOR_COMMANDS, ORCHESTRATOR_REPLIES),
        handlers=orchestrator.handlers(), routers=(api.router, api.operator_router), workers=(deadlines,),
    )
    app = create_app(definition, settings)
    app.state.orchestrator = orchestrator
    return app


def main() -> None:
    settings = Settings()
    serve(build_app(settings), settings)
