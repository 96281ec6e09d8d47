"""``make bench``: throughput and latency of whole sagas on this machine.

Places ``--orders`` orders (a mix: mostly successes, some of each failure) with
``--concurrency`` clients, and measures from POST to the saga's final status.
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

from orchestrator.engine import FINAL_STATUSES

from .credentials import operator_token
from .demo import SCENARIOS, order_body
from .runner import Stack
from .services import SERVICES


def run(urls: dict[str, str], orders: int, concurrency: int, token: str) -> dict:
    http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=concurrency * 2))
    for sku in ("SKU-1", "SKU-2", "SKU-3"):
        http.put(
            f"{urls['inventory_svc']}/stock/{sku}", json={"available": 1_000_000}, headers={"Authorization": f"Bearer {token}"}
        ).raise_for_status()
    mix = [SCENARIOS[0]] * 6 + list(SCENARIOS[1:])

    def one(i: int) -> tuple[str, float]:
        started = time.monotonic()
        placed = http.post(f"{urls['order_svc']}/orders", json=order_body(mix[i % len(mix)])).json()
        while True:
            response = http.get(f"{urls['orchestrator']}/sagas/{placed['saga_id']}")
            if response.status_code == 200 and response.json()["status"] in FINAL_STATUSES:
                return response.json()["status"], time.monotonic() - started
            time.sleep(0.2)  # the poll itself loads the orchestrator; 0.2 s bounds the error

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(orders)))
    wall = time.monotonic() - t0
    latencies = sorted(r[1] for r in results)
    return {
        "orders": orders,
        "concurrency": concurrency,
        "wall_seconds": wall,
        "sagas_per_second": orders / wall,
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "max": latencies[-1],
        "outcomes": {s: sum(1 for r in results if r[0] == s) for s in FINAL_STATUSES},
    }


def main(orders: int = 200, concurrency: int = 16) -> None:
    console = Console()
    token = operator_token()
    with Stack(
        workdir=Path(tempfile.mkdtemp(prefix="saga-bench-")),
        database_url=os.environ.get("DATABASE_URL"),
        endpoint=os.environ.get("AWS_ENDPOINT_URL"),
        env={"SAGA_OPERATOR_TOKEN": token},
    ) as stack:
        result = run({s.module: stack.url(s.module) for s in SERVICES}, orders, concurrency, token)
    table = Table(title="whole sagas, POST /orders to final saga status")
    for key in ("orders", "concurrency", "wall_seconds", "sagas_per_second", "p50", "p95", "max", "outcomes"):
        value = result[key]
        table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
