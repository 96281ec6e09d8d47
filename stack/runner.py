"""Starts and stops the whole system as child processes (demo and end-to-end tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from contracts.topology import Naming

from . import infra, terraform
from .services import BY_NAME, SERVICES


@dataclass
class Stack:
    """Everything needed for one running system.

    ``database_url`` names a PostgreSQL server (one database per service is created on it);
    None starts an embedded PostgreSQL. ``endpoint`` is an AWS endpoint; None starts a moto
    server. ``prefix`` isolates queues, topics and databases from any other stack.

    On a moto server of its own the stack creates the queues and topics itself. On a given
    endpoint it adopts them when they are there, and otherwise applies the Terraform in
    ``infra/`` for its prefix (about 90 s on LocalStack) and deletes what it applied when it stops.
    """

    workdir: Path
    database_url: str | None = None
    endpoint: str | None = None
    prefix: str = field(default_factory=lambda: f"s{uuid.uuid4().hex[:8]}")
    ports: dict[str, int] = field(default_factory=lambda: {s.module: s.port for s in SERVICES})
    env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    """Environment for one service only, by module (e.g. its own AWS endpoint), or for one
    process only, by instance (``orchestrator#1``: a rolling deploy's new release beside the old)."""
    replicas: dict[str, int] = field(default_factory=dict)
    """Processes of each service (by module) started with the stack; 1 where not given. The
    first keeps the service's port and is named by its module; the others are named
    ``module#N`` (see :meth:`instances`) and get ports of their own."""
    connections: int | None = None
    """PostgreSQL connections all of this stack's processes may hold at once: each process's
    pools are sized from it (:func:`pool_sizes`), as ``infra/`` sizes them from the database's
    limit, so that replicas never run the server out of connections. By default 90 of an
    embedded server of its own (its limit is 100) and 40 of a given one (a test session runs two
    stacks side by side on a server of 100). ``DB_POOL_SIZE`` and the like in ``env`` take precedence."""
    drop_databases: bool = True
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _emulator: subprocess.Popen | None = None
    _applied: bool = False
    _urls: dict[str, str] = field(default_factory=dict)

    # ---- lifecycle
    def start(self) -> Stack:
        """Start everything; if any part fails, stop what did start before raising."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.database_url is None:
            self.connections = self.connections or 90
            self.database_url = infra.start_embedded_postgres(self.workdir / "pgdata", keep_running=False)
        if self.endpoint is None:
            port = infra.free_port()
            self._emulator = infra.start_emulator(port, self.workdir / "emulator.log")
            self.endpoint = f"http://127.0.0.1:{port}"
            infra.provision(Naming(self.prefix), endpoint=self.endpoint)
        else:
            self._applied = terraform.adopt_or_apply(Naming(self.prefix), self.endpoint, self.workdir)
        self._urls = infra.database_urls(self.database_url, self.prefix, [s.database for s in SERVICES])
        started = []
        for service in SERVICES:
            for index in range(max(self.replicas.get(service.module, 1), 1)):
                instance = service.module if index == 0 else f"{service.module}#{index}"
                self.start_service(instance, wait=False)
                started.append(instance)
        for instance in started:
            self.wait_healthy(instance)
        return self

    def stop(self) -> None:
        for module in list(self.processes):
            self.stop_service(module)
        if self._emulator:
            self._emulator.terminate()
            self._emulator.wait(10)
        elif self._applied and self.endpoint is not None:  # applied only once the endpoint is known
            infra.remove(Naming(self.prefix), endpoint=self.endpoint)
        if self.drop_databases and self.database_url:
            infra.drop_databases(self.database_url, self.prefix, [s.database for s in SERVICES])

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- one process
    # An instance is one process of a service: its module for the first, ``module#N`` for the
    # others. Every instance of a service shares its database and queues, as ECS tasks do.
    def start_service(self, instance: str, *, wait: bool = True) -> None:
        log = (self.workdir / f"{instance}.log").open("ab")
        self.processes[instance] = subprocess.Popen(
            [sys.executable, "-m", module_of(instance)],
            env=self.service_environment(instance),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_healthy(instance)

    def stop_service(self, instance: str, *, kill: bool = False) -> None:
        process = self.processes.pop(instance, None)
        if process is None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    @contextlib.contextmanager
    def restarted_with(self, instance: str, **env: str) -> Iterator[None]:
        """``instance`` restarted with ``env`` on top of its environment, and restarted as it
        was afterwards."""
        self.service_env[instance] = env
        self.stop_service(instance)
        self.start_service(instance)
        try:
            yield
        finally:
            self.service_env.pop(instance)
            self.stop_service(instance)
            self.start_service(instance)

    def wait_healthy(self, instance: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes[instance].poll() is not None:
                raise RuntimeError(
                    f"{instance} exited with {self.processes[instance].returncode}; see {self.workdir}/{instance}.log"
                )
            try:
                if httpx.get(f"{self.url(instance)}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{instance} not healthy after {timeout}s")

    # ---- replicas
    def instances(self, module: str) -> list[str]:
        """The running processes of ``module``, oldest first."""
        return [i for i in self.processes if module_of(i) == module]

    def add_replica(self, module: str, *, wait: bool = True) -> str:
        """Start one more process of ``module`` on a port of its own; returns its instance name."""
        taken = {i for i in self.ports if module_of(i) == module}
        index = next(n for n in range(1, 1000) if f"{module}#{n}" not in taken)
        instance = f"{module}#{index}"
        self.ports[instance] = infra.free_port()
        self.start_service(instance, wait=wait)
        return instance

    def replace(self, instance: str) -> str:
        """Roll one process the way ECS deploys (minimum healthy 100 %, maximum 200 %): start
        its successor, wait until that is healthy, then SIGTERM the old one. Returns the new instance."""
        successor = self.add_replica(module_of(instance))
        self.stop_service(instance)
        return successor

    # ---- addresses and environment
    def url(self, instance: str) -> str:
        return f"http://127.0.0.1:{self.port(instance)}"

    def port(self, instance: str) -> int:
        if instance not in self.ports:
            self.ports[instance] = infra.free_port()
        return self.ports[instance]

    def urls(self, module: str) -> list[str]:
        """Every running process's address of ``module`` (each serves the same API)."""
        return [self.url(i) for i in self.instances(module)]

    def service_database_url(self, module: str) -> str:
        """The SQLAlchemy URL of ``module``'s own database in this stack."""
        return self._urls[BY_NAME[module].database]

    def aws_environment(self) -> dict[str, str]:
        return infra.emulator_environment(self.endpoint or "") | {"SAGA_RESOURCE_PREFIX": self.prefix}

    def service_environment(self, instance: str) -> dict[str, str]:
        module = module_of(instance)
        service = BY_NAME[module]
        planned = sum(max(self.replicas.get(s.module, 1), 1) for s in SERVICES)
        # Two more than planned: a rolling deploy or a scale-out runs a process beside the others.
        pools = pool_sizes(self.connections or 40, max(planned, len(self.processes)) + 2)
        return (
            os.environ
            | pools
            | self.aws_environment()
            | {
                f"{service.env_prefix}DATABASE_URL": self._urls[service.database],
                f"{service.env_prefix}PORT": str(self.port(instance)),
                "PYTHONUNBUFFERED": "1",
            }
            | (self.console_links() if module == "orchestrator" else {})
            | ({} if module == "orchestrator" else {"SAGA_IDENTITY_URL": self.url("orchestrator")})
            | self.env
            | self.service_env.get(module, {})
            | (self.service_env.get(instance, {}) if instance != module else {})
        )

    def console_links(self) -> dict[str, str]:
        """Where the orchestrator's console links each participant's records in this stack."""
        return {
            f"ORCHESTRATOR_CONSOLE__LINKS__{name.upper()}": self.url(f"{name}_svc")
            for name in ("order", "inventory", "payment", "fulfillment", "notification")
        }

    def client(self, name: str):
        """A boto3 client on this stack's endpoint."""
        return infra.client(name, self.endpoint)

    def queue_url(self, logical: str) -> str:
        return self.client("sqs").get_queue_url(QueueName=Naming(self.prefix).physical(logical))["QueueUrl"]

    def send(self, logical: str, body: str, *, group: str | None = None) -> None:
        """Put ``body`` on a queue of this stack directly (what a test plays another sender with);
        a FIFO queue gets a message group (``group``, or one of its own) and a deduplication id."""
        fifo = {"MessageGroupId": group or uuid.uuid4().hex, "MessageDeduplicationId": uuid.uuid4().hex}
        extra = fifo if Naming(self.prefix).is_fifo(logical) else {}
        self.client("sqs").send_message(QueueUrl=self.queue_url(logical), MessageBody=body, **extra)


def module_of(instance: str) -> str:
    """The service module an instance (``orchestrator`` or ``orchestrator#2``) runs."""
    return instance.partition("#")[0]


DEPLOYED_POOLS: dict[str, dict[str, str]] = {
    # What infra/'s connection budget gives every task of the default deployment (db.t4g.medium),
    # and the least a plan accepts (db.t4g.small); infra/tests/connection_budget.tftest.hcl
    # asserts the same numbers of the plan.
    "deployed": {"DB_POOL_SIZE": "7", "DB_MAX_OVERFLOW": "0", "RELAY_POOL_SIZE": "2"},
    "minimum": {"DB_POOL_SIZE": "3", "DB_MAX_OVERFLOW": "0", "RELAY_POOL_SIZE": "1"},
}
"""``POOLS=deployed`` / ``POOLS=minimum`` of ``make chaos`` and ``make bench``: a local run with
the pools a deployment gets instead of a local run's full ones."""


def pools_named(name: str | None) -> dict[str, str]:
    """The pool settings ``name`` stands for (none: a local run's own); a clear error otherwise."""
    if not name:
        return {}
    if name not in DEPLOYED_POOLS:
        raise SystemExit(f"POOLS={name}: one of {', '.join(DEPLOYED_POOLS)} (or unset, for a local run's pools)")
    return DEPLOYED_POOLS[name]


def pool_sizes(connections: int, processes: int) -> dict[str, str]:
    """Each of ``processes``' share of ``connections``: a quarter (1 to 4) for the relay's pool,
    the rest for the main pool, half kept and half overflow (the services' settings)."""
    share = max(connections // max(processes, 1), 3)
    relay = max(1, min(4, share // 4))
    main = min(share - relay, 20)  # at most the services' defaults: 10 kept and 10 overflow
    kept = max(1, main // 2)
    return {"DB_POOL_SIZE": str(kept), "DB_MAX_OVERFLOW": str(main - kept), "RELAY_POOL_SIZE": str(relay)}
