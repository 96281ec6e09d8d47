"""Data with a lifetime, on real processes: with retentions of seconds and a janitor that runs
every second, a finished saga is purged and ``GET /sagas/{id}`` answers 410, its order keeps
its ids and amounts but no longer the customer's email and address, its notifications are
gone; a saga still running (its payment participant down) stays, however long it waits."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import asyncpg
import pytest

from messaging.database import asyncpg_dsn
from tests.conftest import eventually
from tests.e2e.conftest import Shop, _stack

SECONDS = 1 / 86_400  # a retention of one second, in the days the settings take


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory, postgres_server, topologies):
    env = {
        "JANITOR_INTERVAL_SECONDS": "1",
        "ORCHESTRATOR_SAGA_RETENTION_DAYS": f"{2 * SECONDS:.10f}",
        "ORDER_PERSONAL_DATA_DAYS": f"{2 * SECONDS:.10f}",
        "NOTIFICATION_RETENTION_DAYS": f"{2 * SECONDS:.10f}",
    }
    with _stack(tmp_path_factory.mktemp("retention"), postgres_server, topologies, **env) as running:
        yield Shop(running)


def _one(stack, module: str, sql: str, *args):
    async def fetch():
        connection = await asyncpg.connect(asyncpg_dsn(stack.service_database_url(module)))
        try:
            return await connection.fetchrow(sql, *args)
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_a_finished_saga_is_purged_after_its_retention_and_a_running_one_stays(short_lived):
    shop = short_lived
    sku = shop.new_sku(available=10)
    finished = shop.place(shop.order_body(sku, 1))
    order, saga = shop.settled(finished)
    assert saga["status"] == "completed"
    shop.stack.stop_service("payment_svc")
    try:
        waiting = shop.place(shop.order_body(sku, 1))
        eventually(lambda: (s := shop.saga(waiting["saga_id"])) and s["status"] == "running", what="a saga waiting on payment")
        gone = eventually(
            lambda: (r := shop.http.get(shop.url("orchestrator", f"/sagas/{finished['saga_id']}"))).status_code == 410 and r,
            timeout=30,
            what="the finished saga purged",
        )
        assert "purged" in gone.json()["detail"] and "not archived" in gone.json()["detail"]
        time.sleep(2)  # a few more of the janitor's passes
        assert shop.saga(waiting["saga_id"])["status"] == "running", "a saga not yet final is never purged"
    finally:
        shop.stack.start_service("payment_svc")
    # The order is the books' record: its amounts and status stay, the person's data goes.
    kept = eventually(
        lambda: (
            (
                r := _one(
                    shop.stack,
                    "order_svc",
                    "SELECT status, total, customer_email, shipping_address FROM orders WHERE order_id = $1::uuid",
                    finished["order_id"],
                )
            )
            and r["customer_email"] is None
            and r
        ),
        timeout=30,
        what="the final order's email erased",
    )
    assert kept["status"] == "confirmed" and kept["total"] == Decimal("12.50") and kept["shipping_address"] is None
    eventually(lambda: shop.notifications(finished["order_id"]) == [], timeout=30, what="its notifications purged")
    assert shop.payments(finished["order_id"])["charged"] == "12.50"
