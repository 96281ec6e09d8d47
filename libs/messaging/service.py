"""The runtime every service shares: database, broker, relay, consumer and HTTP API.

A service supplies a :class:`ServiceDefinition` (its tables, handlers, queue and routes);
the lifespan builds engines and clients at start and stops them cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, cast

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import cloudwatch, database, http, identity, janitor, logs, metrics, migrations, tables, tracing
from .audit import AuditLog
from .aws import Broker, open_broker
from .bus import Handlers, MessageBus
from .consumer import Consumer
from .envelope import Message
from .naming import Naming
from .relay import Relay
from .settings import ServiceSettings
from .trust import Trust

log = structlog.get_logger("service")


@dataclass
class Runtime:
    """What the lifespan built; routes reach it through :func:`runtime`."""

    name: str
    settings: ServiceSettings
    sessions: async_sessionmaker[AsyncSession]
    broker: Broker
    relay_sessions: async_sessionmaker[AsyncSession] | None = None
    """The relay's own small pool (``sessions`` when None)."""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    consumers: dict[str, Consumer] = field(default_factory=dict)
    """The consumer of each queue, by logical name (a worker may ask how far one has read)."""


Worker = Callable[[Runtime], Coroutine[Any, Any, None]]


@dataclass
class ServiceDefinition:
    name: str
    package: str
    """The service's Python package, which holds its ``migrations``."""
    metadata: MetaData
    queues: Sequence[str]
    """Logical names of the queues this service consumes."""
    handlers: Handlers
    routers: Sequence[APIRouter] = ()
    on_start: Sequence[Worker] = ()
    """Run once after the tables exist (seeding, checks)."""
    workers: Sequence[Worker] = ()
    """Extra background loops besides the relay and the consumer; they run until ``runtime.stop``."""
    expiring: Sequence[janitor.Purge] = ()
    """Rows of the service's own tables that the janitor deletes once expired."""
    naming: Callable[[str], Naming] = Naming
    """Physical names from the resource prefix: the system's own :class:`Naming`, which knows its
    FIFO queues and who may send to each."""
    redriver: str | None = "orchestrator"
    """The service that redrives dead-letter queues (:attr:`messaging.trust.Trust.redriver`)."""
    directory: Callable[[Runtime], identity.Directory] | None = None
    """Where operators' personal tokens are looked up: the orchestrator's own table there;
    elsewhere the orchestrator, asked at ``SAGA_IDENTITY_URL`` (none when unset)."""


def runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    async with runtime(request).sessions() as db_session:
        yield db_session


RuntimeDep = Annotated[Runtime, Depends(runtime)]
SessionDep = Annotated[AsyncSession, Depends(session)]


# --------------------------------------------------------------------------- the audit log
class AuditView(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="The operator's name; 'anonymous' when no valid token was given.")
    role: str | None
    action: str = Field(description="The route (its operationId) or console action.")
    target: str = Field(description="The path acted on.")
    outcome: Literal["ok", "refused", "denied", "failed"]
    status: int
    source: str | None = Field(description="The address the request came from (the load balancer's, on AWS).")
    detail: dict[str, Any]


audit_routes = http.operator_router(prefix="/operator", tags=["audit"])


@audit_routes.get("/audit", response_model=list[AuditView])
async def read_audit(
    request: Request,
    db: SessionDep,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_.]{0,99}$")] = None,
    outcome: Literal["ok", "refused", "denied", "failed"] | None = None,
    since: http.Instant | None = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditView]:
    """This service's audit log, newest first: every operator write and every refused request."""
    guard: http.Guard = request.app.state.guard
    assert guard.audit is not None
    rows = await guard.audit.read(db, actor=actor, action=action, outcome=outcome, since=since, before_id=before_id, limit=limit)
    return [AuditView(**row) for row in rows]


def create_app(definition: ServiceDefinition, settings: ServiceSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logs.configure(definition.name, settings.log_level)
        iam = settings.database_iam_auth
        await database.create_if_missing(settings.database_url, iam=iam)
        timeouts = settings.database_timeouts()
        engine = database.engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            iam=iam,
            timeouts=timeouts,
        )
        tracing.instrument_engine(engine)  # not the relay's: its passes belong to no trace
        # The relay has connections of its own: handlers that fill the main pool (each waits
        # on its saga's row lock, say) must never keep a reply from being published. As many
        # destinations publish at once as it has connections (RELAY_POOL_SIZE, four by
        # default) and the others wait for a connection, holding nothing. All kept, no
        # overflow: an overflow connection is closed as soon as it is handed back, and with
        # one pooled and three overflow for the seven destinations drained at once, the
        # orchestrator opened 290 connections in 20 s at 600 orders a minute (each a
        # PostgreSQL backend started, its types introspected, its statements prepared).
        relay_engine = database.engine(
            settings.database_url, pool_size=settings.relay_pool_size, max_overflow=0, iam=iam, timeouts=timeouts
        )
        async with engine.begin() as connection:
            for name in database.UNLIMITED:  # SET LOCAL: this transaction only
                await connection.execute(text(f"SET LOCAL {name} = 0"))
            await connection.run_sync(migrations.upgrade, definition.package)
        async with (
            open_broker(definition.naming(settings.resource_prefix)) as broker,
            cloudwatch.publishing(
                metrics.CLOUDWATCH,
                service=definition.package,
                sink=settings.metrics_sink,
                interval=settings.metrics_publish_interval,
            ),
        ):
            rt = Runtime(
                definition.name,
                settings,
                async_sessionmaker(engine, expire_on_commit=False),
                broker,
                relay_sessions=async_sessionmaker(relay_engine, expire_on_commit=False),
            )
            app.state.runtime = rt
            directory = _directory(definition, rt)
            app.state.guard = http.Guard(
                identity.Authenticator(identity.Bootstrap(settings.operator_tokens()), directory),
                AuditLog(rt.sessions, tables.metadata.tables["audit_log"], definition.name),
            )
            for hook in definition.on_start:
                await hook(rt)
            tasks = [asyncio.create_task(coroutine, name=name) for name, coroutine in _workers(definition, rt)]
            log.info("service_started", port=settings.port, traces_exporter=settings.otel_traces_exporter)
            try:
                yield
            finally:
                # SIGTERM (a deploy) lands here: consumers stop receiving, finish what is in
                # flight and hand back what they did not start; the relay finishes its pass.
                # Only what outlasts the grace period is cancelled.
                rt.stop.set()
                _, late = await asyncio.wait(tasks, timeout=settings.shutdown_grace_seconds)
                for task in late:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if isinstance(directory, identity.Remote):
                    await directory.close()
                await engine.dispose()
                await relay_engine.dispose()
                tracing.shutdown()

    tracing.configure(definition.name, settings.otel_traces_exporter)
    app = FastAPI(
        title=f"{definition.name} service", version="1", lifespan=lifespan, generate_unique_id_function=http.operation_id
    )
    http.install(app)
    app.add_middleware(http.BodyLimit, limit=settings.max_body_bytes)
    tracing.instrument_app(app)

    @app.get("/health", include_in_schema=False)
    async def health(rt: RuntimeDep) -> dict[str, Any]:
        return {"service": rt.name, "status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in definition.routers:
        app.include_router(router)
    app.include_router(audit_routes)
    return app


def _directory(definition: ServiceDefinition, rt: Runtime) -> identity.Directory:
    if definition.directory is not None:
        return definition.directory(rt)
    if rt.settings.identity_url:
        return identity.Remote(rt.settings.identity_url, rt.settings.identity_cache_seconds)
    return identity.Nobody()


def _workers(definition: ServiceDefinition, rt: Runtime) -> Iterator[tuple[str, Coroutine[Any, Any, None]]]:
    settings = rt.settings
    relay = Relay(
        rt.relay_sessions or rt.sessions,
        rt.broker,
        service=definition.name,
        poll_interval=settings.relay_poll_interval,
        duplicate_delivery=settings.duplicate_delivery,
        purge_after_publish=Message.personal_types(),
        chaos_copies=settings.chaos_copies,
        chaos_copy_chance=settings.chaos_copy_chance,
        linger=settings.relay_linger,
    )
    trust = Trust(
        senders=rt.broker.naming.senders,
        principals=settings.sender_principals,
        redriver=definition.redriver,
        own=definition.name,
    )
    bus = MessageBus(
        consumer=definition.name, sender=definition.name, sessions=rt.sessions, handlers=definition.handlers, trust=trust
    )
    metrics.CLOUDWATCH.declare("MessagesDeadLettered", "MessagesRefused")
    yield "relay", relay.run(rt.stop)
    yield (
        "janitor",
        janitor.run(
            rt.sessions,
            rt.stop,
            service=definition.name,
            outbox_retention=timedelta(days=settings.outbox_retention_days),
            guard_retention=timedelta(days=settings.guard_retention_days),
            expiring=definition.expiring,
            interval=settings.janitor_interval,
        ),
    )
    for queue in definition.queues:
        consumer = Consumer(
            rt.broker,
            queue,
            batch=bus.handle_batch,
            service=definition.name,
            wait_time_seconds=settings.consumer_wait_seconds,
            visibility_timeout=settings.consumer_visibility_timeout,
            max_in_flight=settings.consumer_max_in_flight,
            receive_linger=settings.consumer_receive_linger,
            delete_linger=settings.consumer_delete_linger,
            fifo=rt.broker.naming.is_fifo(queue),
            dead_letter_after=settings.consumer_dead_letter_after,
        )
        rt.consumers[queue] = consumer
        yield f"consumer:{queue}", consumer.run(rt.stop)
    for worker in definition.workers:
        yield worker.__name__, worker(rt)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    import uvicorn

    # log_config=None: uvicorn's own records (such as a malformed request) go through the
    # JSON handler set up by logs.configure instead of a plain-text handler of uvicorn's.
    # uvloop and httptools: the event loop and HTTP parser in C. A busy service spends much
    # of its time writing small requests to sockets (PostgreSQL, the AWS endpoint), where
    # asyncio's own selector loop costs the most (see docs/performance.md).
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        lifespan="on",
        log_config=None,
        loop="uvloop",
        http="httptools",
    )
