"""The peer of the performance target: the same order saga as a DBOS Transact workflow.

``make bench-peer`` (``python -m stack.bench.peer``) runs it on this machine, beside ``make
bench``, so that the two are compared in the same hour (absolute figures on these machines
move by a factor of two or three from hour to hour). The workflow has the saga's steps and
compensations, each a local transaction in the database of the service that owns it (a
database per service, as here), with the same mix of outcomes as the bench's default; DBOS
checkpoints every step in its system database, so a crashed run resumes where it stopped.
It is driven closed-loop by ``--threads`` threads (8, as DBOS's own benchmarks do), for
``--duration`` seconds after ``--warmup``; what it reports is orders finished per minute and
CPU seconds per order of its process and of PostgreSQL. Written to ``peer.json``, which
``make bench-table`` reads for the ratio.

It is not part of the system: nothing imports it, and ``dbos`` is a dev dependency only.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import typer
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from .. import infra
from .stats import DEFAULT_MIX, parse_mix, sequence

SERVICES = ("order", "inventory", "payment", "fulfillment", "notification")
SCHEMA = {
    "order": [
        "CREATE TABLE orders (order_id uuid PRIMARY KEY, customer_id text NOT NULL, items jsonb NOT NULL, "
        "total numeric(12, 2) NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
        "updated_at timestamptz NOT NULL DEFAULT now())"
    ],
    "inventory": [
        "CREATE TABLE stock (sku text PRIMARY KEY, available integer NOT NULL, reserved integer NOT NULL DEFAULT 0)",
        "CREATE TABLE reservations (order_id uuid PRIMARY KEY, sku text NOT NULL, quantity integer NOT NULL, "
        "status text NOT NULL)",
        "INSERT INTO stock (sku, available) VALUES ('SKU-1', 10000000), ('SKU-2', 10000000)",
    ],
    "payment": ["CREATE TABLE payments (order_id uuid PRIMARY KEY, amount numeric(12, 2) NOT NULL, status text NOT NULL)"],
    "fulfillment": ["CREATE TABLE shipments (order_id uuid PRIMARY KEY, address jsonb NOT NULL, status text NOT NULL)"],
    "notification": ["CREATE TABLE notifications (order_id uuid PRIMARY KEY, email text NOT NULL, status text NOT NULL)"],
}


class Refused(Exception):
    """A participant's business refusal: the saga compensates."""


def _databases(server: str, prefix: str) -> dict[str, Engine]:
    """Fresh databases ``<prefix>_<service>`` with their tables; engines on psycopg."""
    admin = create_engine(make_url(server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in (*SERVICES, "dbos"):
            connection.execute(text(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{prefix}_{name}"'))
    admin.dispose()
    engines = {}
    for service in SERVICES:
        url = make_url(server).set(drivername="postgresql+psycopg", database=f"{prefix}_{service}")
        engines[service] = create_engine(url, pool_size=10, max_overflow=0)
        with engines[service].begin() as connection:
            for statement in SCHEMA[service]:
                connection.execute(text(statement))
    return engines


def build(engines: dict[str, Engine]):
    """The workflow and its steps, registered with DBOS (imported here: a dev dependency)."""
    from dbos import DBOS

    def run(service: str, sql: str, **params: Any) -> Any:
        with engines[service].begin() as connection:
            return connection.execute(text(sql), params)

    @DBOS.step()
    def create_order(order: dict[str, Any]) -> None:
        run(
            "order",
            "INSERT INTO orders (order_id, customer_id, items, total, status) "
            "VALUES (:id, :customer, CAST(:items AS jsonb), :total, 'pending')",
            id=order["id"],
            customer=order["customer"],
            items=json.dumps(order["items"]),
            total=order["total"],
        )

    @DBOS.step()
    def reserve_inventory(order: dict[str, Any]) -> None:
        item = order["items"][0]
        with engines["inventory"].begin() as connection:
            taken = connection.execute(
                text(
                    "UPDATE stock SET available = available - :q, reserved = reserved + :q "
                    "WHERE sku = :sku AND available >= :q RETURNING sku"
                ),
                {"q": item["quantity"], "sku": item["sku"]},
            ).first()
            if taken is None:
                raise Refused("out of stock")
            connection.execute(
                text("INSERT INTO reservations (order_id, sku, quantity, status) VALUES (:id, :sku, :q, 'reserved')"),
                {"id": order["id"], "sku": item["sku"], "q": item["quantity"]},
            )

    @DBOS.step()
    def release_inventory(order: dict[str, Any]) -> None:
        item = order["items"][0]
        with engines["inventory"].begin() as connection:
            released = connection.execute(
                text(
                    "UPDATE reservations SET status = 'released' WHERE order_id = :id AND status = 'reserved' RETURNING quantity"
                ),
                {"id": order["id"]},
            ).first()
            if released is not None:
                connection.execute(
                    text("UPDATE stock SET available = available + :q, reserved = reserved - :q WHERE sku = :sku"),
                    {"q": released.quantity, "sku": item["sku"]},
                )

    @DBOS.step()
    def process_payment(order: dict[str, Any]) -> None:
        declined = order["kind"] == "decline"
        run(
            "payment",
            "INSERT INTO payments (order_id, amount, status) VALUES (:id, :amount, :status)",
            id=order["id"],
            amount=order["total"],
            status="declined" if declined else "captured",
        )
        if declined:
            raise Refused("card declined")

    @DBOS.step()
    def refund_payment(order: dict[str, Any]) -> None:
        run("payment", "UPDATE payments SET status = 'refunded' WHERE order_id = :id AND status = 'captured'", id=order["id"])

    @DBOS.step()
    def fulfill_order(order: dict[str, Any]) -> None:
        if order["kind"] == "undeliverable":
            raise Refused("address not served")
        run(
            "fulfillment",
            "INSERT INTO shipments (order_id, address, status) VALUES (:id, CAST(:address AS jsonb), 'scheduled')",
            id=order["id"],
            address=json.dumps(order["address"]),
        )

    @DBOS.step()
    def cancel_shipment(order: dict[str, Any]) -> None:
        run("fulfillment", "UPDATE shipments SET status = 'cancelled' WHERE order_id = :id", id=order["id"])

    @DBOS.step()
    def send_confirmation(order: dict[str, Any]) -> None:
        bounced = order["kind"] == "bounce"
        run(
            "notification",
            "INSERT INTO notifications (order_id, email, status) VALUES (:id, :email, :status)",
            id=order["id"],
            email=order["email"],
            status="bounced" if bounced else "sent",
        )
        if bounced:
            raise Refused("mailbox bounced")

    @DBOS.step()
    def finish_order(order: dict[str, Any], status: str) -> None:
        run("order", "UPDATE orders SET status = :status, updated_at = now() WHERE order_id = :id", id=order["id"], status=status)

    @DBOS.workflow()
    def order_saga(order: dict[str, Any]) -> str:
        undo = []
        try:
            create_order(order)
            reserve_inventory(order)
            undo.append(release_inventory)
            process_payment(order)
            undo.append(refund_payment)
            fulfill_order(order)
            undo.append(cancel_shipment)
            send_confirmation(order)
        except Refused:
            for step in reversed(undo):
                step(order)
            finish_order(order, "compensated")
            return "compensated"
        finish_order(order, "completed")
        return "completed"

    return order_saga


def order(kind: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "kind": kind,
        "customer": "bench",
        "email": "bench@example.com",
        "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": "10.00"}],
        "total": "20.00",
        "address": {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"},
    }


def measure(server: str, *, threads: int, warmup: float, duration: float, mix: dict[str, float]) -> dict[str, Any]:
    from dbos import DBOS, DBOSConfig

    prefix = f"peer{uuid.uuid4().hex[:6]}"
    engines = _databases(server, prefix)
    system = make_url(server).set(database=f"{prefix}_dbos").render_as_string(hide_password=False)
    config: DBOSConfig = {"name": "order-saga-peer", "system_database_url": system, "log_level": "WARNING"}
    DBOS(config=config)
    saga = build(engines)
    DBOS.launch()
    kinds = sequence(mix, 100_000)
    finished: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + warmup + duration

    def worker(offset: int) -> None:
        index = offset
        while time.monotonic() < stop_at:
            status = saga(order(kinds[index % len(kinds)]))
            index += threads
            with lock:
                finished.append(time.monotonic())
                statuses[status] = statuses.get(status, 0) + 1

    me = psutil.Process()
    cpu_before = None
    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    time.sleep(warmup)
    cpu_before = sum(me.cpu_times()[:2])
    postgres_before = _postgres_cpu()
    time.sleep(duration)
    cpu_after = sum(me.cpu_times()[:2])
    postgres_after = _postgres_cpu()
    for thread in pool:
        thread.join()
    DBOS.destroy()
    for engine in engines.values():
        engine.dispose()
    in_window = sum(1 for t in finished if start + warmup <= t <= stop_at)
    return {
        "peer": "dbos",
        "dbos_version": _version(),
        "threads": threads,
        "warmup": warmup,
        "duration": duration,
        "orders_per_minute": 60 * in_window / duration,
        "statuses": statuses,
        "cpu_seconds_per_order": (cpu_after - cpu_before) / max(in_window, 1),
        "postgres_cpu_seconds_per_order": (postgres_after - postgres_before) / max(in_window, 1),
    }


def _postgres_cpu() -> float:
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            try:
                total += sum(process.cpu_times()[:2])
            except psutil.Error:
                continue
    return total


def _version() -> str:
    from importlib.metadata import version

    return version("dbos")


def main(
    duration: float = typer.Option(60, help="seconds measured"),
    warmup: float = typer.Option(10, help="seconds before the measurement starts"),
    threads: int = typer.Option(8, help="threads running workflows, closed loop"),
    mix: str = typer.Option(DEFAULT_MIX, help="kind=weight,... of success, decline, undeliverable, bounce"),
    out: Path = typer.Option(Path("bench-results"), help="directory of the results (a subdirectory per run)"),
) -> None:
    """The same saga on DBOS Transact: orders finished per minute on this machine, now."""
    import os

    server = os.environ.get("DATABASE_URL")
    if not server:
        directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"saga-peer-pg-{os.getpid()}"
        server = infra.start_embedded_postgres(directory, keep_running=False)
    result = measure(server, threads=threads, warmup=warmup, duration=duration, mix=parse_mix(mix))
    target = out / time.strftime("%Y%m%d-%H%M%S")
    target.mkdir(parents=True, exist_ok=True)
    (target / "peer.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(f"written: {target / 'peer.json'}")


if __name__ == "__main__":
    typer.run(main)
