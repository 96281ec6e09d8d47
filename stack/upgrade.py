"""An upgrade from the previous release to this one, under load, as a deployment makes it.

The previous release is the last one in ``docs/releases.md`` older than this tree. It runs from
a git worktree of its commit, on its own Terraform applied to the emulator, with orders coming
in; then this release's Terraform is applied to the same state and every service is rolled the
way ECS rolls a task (the successor started and healthy before the old process gets SIGTERM),
the orchestrator first, so that old and new processes of a service run side by side while
orders keep coming. :func:`check` then asks what a user would: every saga final with the
outcome its order called for, the books balanced, nothing left in a queue or a dead-letter
queue. tests/e2e/test_upgrade.py runs it in ``make test-all``; ``make upgrade`` runs it alone.
"""

from __future__ import annotations

import contextlib
import random
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

from contracts.topology import DEAD_LETTER_QUEUES, QUEUES, Naming

from . import chaos, infra, terraform
from .runner import Stack
from .services import SERVICES

REPO = Path(__file__).resolve().parents[1]
RELEASES = REPO / "docs" / "releases.md"

ROLL_ORDER = ("orchestrator", "order_svc", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc")
"""The orchestrator first: a new participant replies to the FIFO reply queue, which only a new
orchestrator reads, and a new orchestrator also drains the standard reply queue that old
participants still send to (infra/README.md, "Upgrading")."""

KINDS = {"ok": (70, "completed"), "declined": (15, "compensated"), "undeliverable": (15, "compensated")}
"""Orders of the chaos run's kinds (:func:`stack.chaos.order_body`): kind -> (share, the saga's end it calls for)."""
FINAL = {"completed", "compensated", "needs_intervention"}


@dataclass(frozen=True)
class Release:
    name: str
    commit: str


def releases() -> list[Release]:
    """Every release in docs/releases.md, oldest first (rows ``| name | commit | ... |``)."""
    rows = re.findall(r"^\|\s*`?([\w.\-]+)`?\s*\|\s*`?([0-9a-f]{7,40})`?\s*\|", RELEASES.read_text(), re.MULTILINE)
    return [Release(name, commit) for name, commit in rows]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def previous_release() -> Release:
    """The newest release whose commit is an ancestor of this tree's (not this tree itself)."""
    head = _git("rev-parse", "HEAD")
    for release in reversed(releases()):
        try:
            commit = _git("rev-parse", f"{release.commit}^{{commit}}")
        except subprocess.CalledProcessError:
            raise RuntimeError(
                f"release {release.name} ({release.commit}) is not in this clone: an upgrade test needs the "
                "history (a full clone, not a shallow one)"
            ) from None
        if (
            commit != head
            and subprocess.run(["git", "-C", str(REPO), "merge-base", "--is-ancestor", commit, head]).returncode == 0
        ):
            return Release(release.name, commit)
    raise RuntimeError(f"no release in {RELEASES} is older than this tree")


@contextlib.contextmanager
def worktree(release: Release, where: Path) -> Iterator[Path]:
    """``release``'s tree checked out at ``where`` (a git worktree), removed afterwards."""
    _git("worktree", "add", "--detach", "--force", str(where), release.commit)
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)], capture_output=True)


@dataclass
class Placed:
    kind: str
    units: dict[str, int]
    order_id: str
    saga_id: str


@dataclass
class Customers:
    """Orders at ``rate`` per second through whichever order_svc process answers, each with an
    Idempotency-Key, so that one that meets a process being stopped is placed again, once."""

    stack: Stack
    skus: list[str]
    rate: float = 3.0
    seed: int = 7
    placed: list[Placed] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(60)

    def _run(self) -> None:
        rng = random.Random(self.seed)
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                kind = rng.choices(list(KINDS), [share for share, _ in KINDS.values()])[0]
                self._place(http, kind, chaos.order_body(rng, kind, self.skus), str(uuid.uuid4()))
                self._stop.wait(1 / self.rate)

    def _place(self, http: httpx.Client, kind: str, body: dict, key: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for url in self.stack.urls("order_svc"):
                try:
                    response = http.post(f"{url}/orders", json=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    continue  # that process is stopping: the next one, with the same key
                if response.status_code in (200, 201, 202):
                    answer = response.json()
                    units = {item["sku"]: item["quantity"] for item in body["items"]}
                    self.placed.append(Placed(kind, units, answer["order_id"], answer["saga_id"]))
                    return
                if response.status_code not in (502, 503):
                    self.refused.append(f"{response.status_code} {response.text[:200]}")
                    return
            time.sleep(0.2)
        self.refused.append("no order_svc process answered for 60 s")


@dataclass
class Upgrade:
    """The previous release running on ``endpoint`` (an emulator) and PostgreSQL, ready to upgrade."""

    previous: Path
    workdir: Path
    database_url: str
    endpoint: str
    env: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"u{uuid.uuid4().hex[:8]}")
    stack: Stack | None = None
    log: list[str] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.workdir / "terraform.tfstate"

    def start_previous(self) -> Stack:
        """The previous release's Terraform applied, and every service of it started."""
        terraform.Deployment(self.endpoint, self.prefix, self.state, source=self.previous / "infra").apply(
            log=self.workdir / "terraform-previous.log"
        )
        self.stack = Stack(
            workdir=self.workdir / "stack",
            database_url=self.database_url,
            endpoint=self.endpoint,
            prefix=self.prefix,
            ports={s.module: infra.free_port() for s in SERVICES},
            env=self.env,
            source=self.previous,
            provisioned=True,
        ).start()
        return self.stack

    def apply_this_release(self) -> None:
        """This release's Terraform on the previous one's state (it fails rather than destroy a queue)."""
        terraform.Deployment(self.endpoint, self.prefix, self.state).apply(log=self.workdir / "terraform-upgrade.log")

    def roll(self) -> None:
        """Every process replaced by this release's, service by service in :data:`ROLL_ORDER`."""
        assert self.stack is not None
        self.stack.source = None
        for module in ROLL_ORDER:
            for instance in self.stack.instances(module):
                successor = self.stack.replace(instance)
                self.log.append(f"{instance} -> {successor}")

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()


def queue_depths(stack: Stack) -> dict[str, int]:
    """Messages still in every queue of this release's topology (the kept standard one included),
    visible or in flight, by logical name."""
    sqs = stack.client("sqs")
    naming = Naming(stack.prefix)
    depths = {}
    for logical in [q.name for q in QUEUES] + list(DEAD_LETTER_QUEUES):
        url = sqs.get_queue_url(QueueName=naming.physical(logical))["QueueUrl"]
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        depths[logical] = sum(int(value) for value in attributes.values())
    return depths


def settle(stack: Stack, placed: list[Placed], timeout: float = 180) -> dict[str, dict]:
    """Every placed order's saga once it is final (or as it is when ``timeout`` runs out)."""
    sagas: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline:
            for order in placed:
                if sagas.get(order.saga_id, {}).get("status") in FINAL:
                    continue
                response = http.get(f"{stack.url('orchestrator')}/sagas/{order.saga_id}")
                if response.status_code == 200:
                    sagas[order.saga_id] = response.json()
            if all(sagas.get(o.saga_id, {}).get("status") in FINAL for o in placed):
                break
            time.sleep(1)
    return sagas


def check(stack: Stack, customers: Customers, operator: dict[str, str], stock: int) -> list[str]:
    """What went wrong, as a user would see it (an empty list: nothing)."""
    problems = [f"order refused: {why}" for why in customers.refused]
    placed = customers.placed
    sagas = settle(stack, placed)
    confirmed = dict.fromkeys(customers.skus, 0)
    with httpx.Client(timeout=10, headers=operator) as http:
        for order in placed:
            saga = sagas.get(order.saga_id)
            wanted = KINDS[order.kind][1]
            if saga is None or saga["status"] != wanted:
                got = saga["status"] if saga else "not found"
                problems.append(f"{order.kind} order {order.order_id}: saga {got}, wanted {wanted}")
                continue
            status = http.get(f"{stack.url('order_svc')}/orders/{order.order_id}").json()["status"]
            if status != ("confirmed" if wanted == "completed" else "cancelled"):
                problems.append(f"{order.kind} order {order.order_id}: order {status} after a saga {wanted}")
            payments = http.get(f"{stack.url('payment_svc')}/payments", params={"order_id": order.order_id}).json()
            charged, refunded = Decimal(payments["charged"]), Decimal(payments["refunded"])
            if wanted == "completed":
                for sku, units in order.units.items():
                    confirmed[sku] += units
                if not (charged > 0 and refunded == 0):
                    problems.append(f"order {order.order_id} confirmed with {charged} charged and {refunded} refunded")
            elif charged != refunded:
                problems.append(f"order {order.order_id} cancelled with {charged} charged and {refunded} refunded")
        for sku, units in confirmed.items():
            level = http.get(f"{stack.url('inventory_svc')}/stock/{sku}").json()
            if (level["available"], level["reserved"]) != (stock - units, units):
                problems.append(f"stock {level}: {stock} at the start, {units} units in confirmed orders")
    for logical, depth in queue_depths(stack).items():
        if depth:
            problems.append(f"{depth} messages left in {logical}")
    return problems
