"""What the benchmark reads from the running system: counters before and after, samples meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aioboto3
import asyncpg
import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from contracts.topology import QUEUES, Naming
from messaging.database import asyncpg_dsn

from ..runner import Stack

SERVICES_CPU = "six services"


def dsn(url: str, database: str | None = None) -> str:
    """The asyncpg DSN of a service's SQLAlchemy URL (of another database on its server if named)."""
    return asyncpg_dsn(url if database is None else make_url(url).set(database=database).render_as_string(hide_password=False))


def database_name(url: str) -> str:
    return str(make_url(url).database)


def aws_session(stack: Stack) -> aioboto3.Session:
    env = stack.aws_environment()
    return aioboto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters at one moment."""

    at: float
    aws: dict[str, Counter[str]]
    """Requests each service sent to AWS so far, by ``service.Operation`` (``aws_requests_total``)."""
    commits: dict[str, int]
    """``pg_stat_database.xact_commit`` of each service's database."""
    cpu: dict[str, float]
    """CPU seconds (user + system) of each process: the services, the emulator, PostgreSQL, the benchmark."""


@dataclass
class Probe:
    """Connections to the stack's databases, metrics endpoints and queues."""

    stack: Stack
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10))
    own_queries: Counter[str] = field(default_factory=Counter)
    """Transactions this probe ran in each service database (subtracted from the services' commits)."""
    _admin: Any = None
    _databases: dict[str, Any] = field(default_factory=dict)
    _queue_urls: dict[str, str] = field(default_factory=dict)
    _sqs: Any = None
    _exit: Any = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One query at a time on the service databases' connections (the sampler and the drain share them)."""

    async def __aenter__(self) -> Probe:
        urls = self.stack._urls
        any_url = next(iter(urls.values()))
        self._admin = await asyncpg.connect(dsn(any_url, "postgres"))
        self._databases = {database_name(url): await asyncpg.connect(dsn(url)) for url in urls.values()}
        client = aws_session(self.stack).client("sqs", endpoint_url=self.stack.endpoint)
        self._exit = client.__aexit__
        self._sqs = await client.__aenter__()
        naming = Naming(self.stack.prefix)
        for queue in QUEUES:
            response = await self._sqs.get_queue_url(QueueName=naming.physical(queue.name))
            self._queue_urls[queue.name] = response["QueueUrl"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._exit(*exc)
        await self.http.aclose()
        for connection in [self._admin, *self._databases.values()]:
            await connection.close()

    # ---- counters
    async def snapshot(self) -> Snapshot:
        async def scrape(module: str) -> tuple[str, Counter[str]]:
            text = (await self.http.get(f"{self.stack.url(module)}/metrics")).text
            counts: Counter[str] = Counter()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "aws_requests_total":
                        counts[f"{sample.labels['service']}.{sample.labels['operation']}"] += int(sample.value)
            return module, counts

        aws = dict(await asyncio.gather(*(scrape(module) for module in self.stack.processes)))
        rows = await self._admin.fetch(
            "SELECT datname, xact_commit FROM pg_stat_database WHERE datname = ANY($1::text[])", list(self._databases)
        )
        commits = {row["datname"]: row["xact_commit"] - self.own_queries[row["datname"]] for row in rows}
        return Snapshot(time.time(), aws, commits, self.cpu())

    def cpu(self) -> dict[str, float]:
        pids = {module: process.pid for module, process in self.stack.processes.items()}
        if self.stack._emulator is not None:
            pids["emulator"] = self.stack._emulator.pid
        seconds = {name: _cpu(psutil.Process(pid)) for name, pid in pids.items()}
        seconds["bench"] = _cpu(psutil.Process())
        # PostgreSQL's backends serving the services' databases, when the server runs on this machine.
        databases = set(self._databases)
        backends = 0.0
        for process in psutil.process_iter(["name", "cmdline"]):
            words = " ".join(process.info["cmdline"] or []).split()
            if process.info["name"] == "postgres" and len(words) > 2 and words[2] in databases:
                try:
                    backends += _cpu(process)
                except psutil.Error:
                    continue
        seconds["postgres"] = backends
        return seconds

    # ---- samples
    async def outbox_backlog(self) -> int:
        """Unpublished outbox rows across the services."""
        total = 0
        async with self._lock:
            for name, connection in self._databases.items():
                self.own_queries[name] += 1
                total += await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return total

    async def queue_depths(self) -> dict[str, int]:
        """``ApproximateNumberOfMessages`` of each queue (dead-letter queues aside)."""

        async def depth(url: str) -> int:
            response = await self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            return int(response["Attributes"]["ApproximateNumberOfMessages"])

        depths = await asyncio.gather(*(depth(url) for url in self._queue_urls.values()))
        return dict(zip(self._queue_urls, depths, strict=True))

    async def finished(self, saga_ids: list[str], final: list[str]) -> int:
        """How many of ``saga_ids`` are in a final status now (the orchestrator's database, not its API)."""
        name = database_name(self.stack._urls["orchestrator"])
        async with self._lock:
            self.own_queries[name] += 1
            return int(
                await self._databases[name].fetchval(
                    "SELECT count(*) FROM sagas WHERE saga_id::text = ANY($1::text[]) AND status = ANY($2::text[])",
                    saga_ids,
                    final,
                )
            )

    async def final_sagas(self, saga_ids: list[str]) -> dict[str, tuple[str, float]]:
        """Each saga's status and the wall-clock time of its last change (``updated_at``), read once at the end."""
        name = database_name(self.stack._urls["orchestrator"])
        async with self._lock:
            self.own_queries[name] += 1
            rows = await self._databases[name].fetch(
                "SELECT saga_id::text AS id, status, extract(epoch FROM updated_at)::float8 AS at FROM sagas "
                "WHERE saga_id::text = ANY($1::text[])",
                saga_ids,
            )
        return {row["id"]: (row["status"], row["at"]) for row in rows}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


# --------------------------------------------------------------------------- the machine's capacity
CAPACITY_WORKERS = 4


async def postgres_commits_per_second(stack: Stack, seconds: float) -> float:
    """Single-row committed inserts per second into a scratch database, from ``CAPACITY_WORKERS`` connections."""
    # The server's own login, not a service's: a service's login may create no database.
    assert stack.database_url is not None, "the stack has started, so it has a server"
    server = stack.database_url
    scratch = f"{stack.prefix}_bench_scratch".replace("-", "_")
    admin = await asyncpg.connect(dsn(server, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        await admin.execute(f'CREATE DATABASE "{scratch}"')
        connections = [await asyncpg.connect(dsn(server, scratch)) for _ in range(CAPACITY_WORKERS)]
        await connections[0].execute("CREATE TABLE rows (id bigserial PRIMARY KEY, body text NOT NULL)")
        until = time.monotonic() + seconds

        async def insert(connection: Any) -> int:
            count = 0
            while time.monotonic() < until:
                await connection.execute("INSERT INTO rows (body) VALUES ($1)", "x" * 200)
                count += 1
            return count

        started = time.monotonic()
        counts = await asyncio.gather(*(insert(c) for c in connections))
        elapsed = time.monotonic() - started
        for connection in connections:
            await connection.close()
        return sum(counts) / elapsed
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        await admin.close()


async def send_message_batches_per_second(stack: Stack, seconds: float) -> float:
    """``SendMessageBatch`` calls (10 messages of 1 KB each) per second to a scratch queue, ``CAPACITY_WORKERS`` at once."""
    async with aws_session(stack).client("sqs", endpoint_url=stack.endpoint) as sqs:
        url = (await sqs.create_queue(QueueName=f"{stack.prefix}-bench-scratch"))["QueueUrl"]
        try:
            entries = [{"Id": str(i), "MessageBody": "x" * 1024} for i in range(10)]
            until = time.monotonic() + seconds

            async def send() -> int:
                count = 0
                while time.monotonic() < until:
                    await sqs.send_message_batch(QueueUrl=url, Entries=entries)
                    count += 1
                return count

            started = time.monotonic()
            counts = await asyncio.gather(*(send() for _ in range(CAPACITY_WORKERS)))
            return sum(counts) / (time.monotonic() - started)
        finally:
            await sqs.delete_queue(QueueUrl=url)
