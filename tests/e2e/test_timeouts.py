"""Every wait on the database has an end: a transaction stuck holding a lock that
``POST /orders`` needs costs each request a 503 after ``DB_LOCK_TIMEOUT``, never the pool, and
the service is whole again as soon as the lock goes."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from messaging.database import asyncpg_dsn
from order_svc.admission import LOCK

LOCK_TIMEOUT = 1


@pytest.fixture
def locked_admission(stack):
    """A session of the order service's own login holding admission's advisory lock, as a
    transaction frozen in the middle of an admission would."""

    async def take() -> asyncpg.Connection:
        connection = await asyncpg.connect(asyncpg_dsn(stack.service_database_url("order_svc")))
        await connection.execute("SELECT pg_advisory_lock($1)", LOCK)
        return connection

    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(take())

    def release() -> None:
        if not connection.is_closed():
            loop.run_until_complete(connection.execute("SELECT pg_advisory_unlock($1)", LOCK))
            loop.run_until_complete(connection.close())

    try:
        yield release
    finally:
        release()
        loop.close()


def test_a_stuck_lock_holder_costs_each_order_a_503_and_the_service_recovers_when_it_lets_go(stack, shop, locked_admission):
    with stack.restarted_with("order_svc", DB_LOCK_TIMEOUT=str(LOCK_TIMEOUT), DB_POOL_SIZE="2", DB_MAX_OVERFLOW="0"):
        sku = shop.new_sku(available=100)
        # More requests than the pool has connections: each gives up on the lock, not on the pool.
        answers = [shop.http.post(shop.url("order_svc", "/orders"), json=shop.order_body(sku, 1)) for _ in range(4)]
        assert [a.status_code for a in answers] == [503] * 4, [a.text for a in answers]
        assert all(a.headers.get("Retry-After") for a in answers)
        assert "busy" in answers[0].json()["detail"]
        assert shop.http.get(shop.url("order_svc", "/health")).status_code == 200
        locked_admission()
        placed = shop.place(shop.order_body(sku, 1))
        order, saga = shop.settled(placed)
        assert saga["status"] == "completed"
