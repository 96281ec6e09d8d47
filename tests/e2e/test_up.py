"""``make up`` under supervisord, as ``python -m stack`` runs it: replicas of every service on
ports of their own, the orders proxy in front of order_svc's, and a start that fails reported
with the reason from the log and left stopped.

Each test runs its own stack: a run directory (``SAGA_RUN_DIR``) and ports (``SAGA_PORT_OFFSET``)
of its own beside any developer's ``make up``, the suite's PostgreSQL, its own moto server,
and ``down`` afterwards.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from stack import infra, supervisor
from stack.services import BY_NAME, SERVICES
from tests import factories
from tests.conftest import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-operator-token-for-up"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_offset(replicas: dict[str, int]) -> int:
    """A port offset where nothing listens on any port of the stack (below the ephemeral range)."""
    for _ in range(100):
        offset = random.randrange(10_000, 24_000, 10)
        if not any(_listening(p["port"]) for p in supervisor.layout(replicas, offset).values()):
            return offset
    raise RuntimeError("no free port offset")


class Up:
    """``python -m stack <command>`` on a stack of the test's own."""

    def __init__(self, run_dir: Path, database_url: str, replicas: str) -> None:
        self.run_dir, self.database_url, self.replicas = run_dir, database_url, replicas
        self.prefix = f"up{uuid.uuid4().hex[:8]}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "SAGA_OPERATOR_TOKEN_PREVIOUS")} | {
            "SAGA_RUN_DIR": str(run_dir),
            "SAGA_PORT_OFFSET": str(_free_offset(supervisor.parse_replicas(replicas))),
            "DATABASE_URL": database_url,
            "SAGA_OPERATOR_TOKEN": TOKEN,
        }

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "stack", *args],
            cwd=ROOT,
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def up(self, **env: str) -> subprocess.CompletedProcess:
        return self("up", "--prefix", self.prefix, "--replicas", self.replicas, "--timeout", "240", **env)

    def state(self) -> dict:
        return json.loads((self.run_dir / "stack.json").read_text())

    def spawned(self) -> int:
        """How many processes supervisord has started so far."""
        return (self.run_dir / "supervisord.log").read_text().count("spawned:")


@pytest.fixture
def make(tmp_path, postgres_server, request):
    stack = Up(tmp_path / "run", postgres_server, request.param)
    yield stack
    stack("down")
    infra.drop_databases(postgres_server, stack.prefix, [s.database for s in SERVICES])


@pytest.mark.parametrize("make", ["2"], indirect=True)
def test_two_replicas_of_each_service_run_healthy_on_ports_of_their_own_and_orders_go_through_the_proxy(make):
    result = make.up()
    assert result.returncode == 0, result.stdout + result.stderr

    state = make.state()
    replicas = {name: p for name, p in state["processes"].items() if p["service"] in BY_NAME}
    assert len(replicas) == 12 and len({p["port"] for p in replicas.values()}) == 12
    assert {p["service"] for p in replicas.values()} == set(BY_NAME)
    status = make("status").stdout
    for name, process in replicas.items():
        assert re.search(rf"^{re.escape(name)}\s+RUNNING\s+{process['port']}\s+ok\b", status, re.M), status
        assert httpx.get(f"{process['url']}/health").json()["status"] == "ok"
    assert re.search(r"^orders_proxy\s+RUNNING\s+\d+\s+ok\b", status, re.M), status

    orders = state["urls"]["order_svc"]
    assert orders == state["processes"]["orders_proxy"]["url"]
    assert state["urls"]["orchestrator"] == replicas["orchestrator"]["url"]  # one address per service
    behind = {f"127.0.0.1:{replicas[name]['port']}" for name in ("order_svc", "order_svc-1")}
    assert {httpx.get(f"{orders}/health").headers["x-upstream"] for _ in range(4)} == behind  # round robin

    operator = httpx.Client(timeout=10, headers={"Authorization": f"Bearer {TOKEN}"})
    sku = f"SKU-{uuid.uuid4().hex[:10].upper()}"
    assert operator.put(f"{state['urls']['inventory_svc']}/stock/{sku}", json={"available": 5}).status_code == 200
    # One replica stopped on its own: the proxy sends the order to the other.
    assert "order_svc-1: stopped" in make("stop", "order_svc-1").stdout
    placed = httpx.post(f"{orders}/orders", json=factories.order_body(sku), timeout=10)
    assert placed.status_code == 202, placed.text
    assert placed.headers["x-upstream"] == f"127.0.0.1:{replicas['order_svc']['port']}"
    saga = eventually(
        lambda: (
            (s := httpx.get(f"{state['urls']['orchestrator']}/sagas/{placed.json()['saga_id']}")).status_code == 200
            and s.json()["status"] in ("completed", "compensated", "needs_intervention")
            and s.json()
        ),
        timeout=90,
        what="order saga final",
    )
    assert saga["status"] == "completed", saga
    # ConfirmOrder is sent when the saga completes, so the order follows a moment later.
    eventually(
        lambda: httpx.get(f"{orders}/orders/{placed.json()['order_id']}").json()["status"] == "confirmed",
        timeout=30,
        what="order confirmed",
    )


@pytest.mark.parametrize("make", ["orchestrator=2"], indirect=True)
def test_a_short_operator_token_fails_up_naming_each_process_and_the_setting_and_leaves_none_restarting(make):
    result = make.up(SAGA_OPERATOR_TOKEN="fourteen-chars")
    assert result.returncode == 1, result.stdout + result.stderr

    names = [*BY_NAME, "orchestrator-1"]
    for name in names:
        assert re.search(
            rf"^{name} did not become healthy: ValidationError: .*SAGA_OPERATOR_TOKEN: "
            r"Value error, an operator token is 16 to 512 visible ASCII characters",
            result.stdout,
            re.M,
        ), result.stdout
    assert "orders_proxy did not become healthy: no order_svc replica behind it is healthy" in result.stdout
    spawned = make.spawned()
    time.sleep(supervisor.STARTRETRIES + 2)  # longer than supervisord's back-off before a restart
    status = make("status").stdout
    for name in [*names, "orders_proxy"]:
        assert re.search(rf"^{name}\s+(STOPPED|FATAL)\s", status, re.M), status
    assert make.spawned() == spawned
