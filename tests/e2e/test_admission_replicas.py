"""Admission control with several order_svc replicas: one bound for the whole deployment.

Four order_svc processes share one database. A burst of orders well above the bound, spread
over all four, must never leave more than ``ORDER_MAX_IN_FLIGHT`` orders in flight at once,
counted in the database while it happens; refused orders are 503 with Retry-After, and every
accepted one finishes.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid

import asyncpg
import httpx
import pytest

from messaging.database import asyncpg_dsn
from stack import infra
from tests.e2e.conftest import Shop, _stack

pytestmark = pytest.mark.e2e

BOUND = 20
REPLICAS = 4
START_BOUND = 60  # ORDER_SAGA_START_BOUND (the default): older pending orders are not counted

# Orders in flight as admission control defines them (see order_svc.admission).
IN_FLIGHT = f"SELECT count(*) FROM orders WHERE status = 'pending' AND created_at > now() - interval '{START_BOUND} seconds'"


@pytest.fixture(scope="module")
def replicated(tmp_path_factory, postgres_server, topologies):
    """A system with four order_svc processes, one of every other service, and a bound of 20."""
    with _stack(
        tmp_path_factory.mktemp("replicated"),
        postgres_server,
        topologies,
        replicas={"order_svc": REPLICAS},
        ORDER_MAX_IN_FLIGHT=str(BOUND),
        ORDER_SAGA_START_BOUND=str(START_BOUND),
    ) as stack:
        assert len(stack.urls("order_svc")) == REPLICAS
        yield Shop(stack)


@pytest.fixture(scope="module")
def order_database(replicated) -> str:
    """The asyncpg DSN of order_svc's database, which all four replicas share."""
    stack = replicated.stack
    return asyncpg_dsn(infra.database_urls(stack.database_url, stack.prefix, ["order"])["order"])


class InFlight:
    """Samples the orders in flight in order_svc's database, as often as it can, until stopped."""

    def __init__(self, dsn: str) -> None:
        self.dsn, self.samples, self.peak = dsn, 0, 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            while not self._stop.is_set():
                self.peak = max(self.peak, await connection.fetchval(IN_FLIGHT))
                self.samples += 1
                await asyncio.sleep(0.005)
        finally:
            await connection.close()

    def stop(self) -> None:
        self._stop.set()


async def _burst(client: httpx.AsyncClient, urls, shop: Shop, sku: str, count: int) -> list[httpx.Response]:
    """``count`` orders at once, round-robin over ``urls``."""
    return await asyncio.gather(
        *(
            client.post(f"{url}/orders", json=shop.order_body(sku, 1, customer_id=f"c-{uuid.uuid4().hex[:12]}"))
            for url, _ in zip(itertools.cycle(urls), range(count), strict=False)
        )
    )


def _sorted(responses: list[httpx.Response]) -> tuple[list[dict], list[httpx.Response]]:
    assert {r.status_code for r in responses} <= {202, 503}, [(r.status_code, r.text) for r in responses if r.status_code != 202]
    refused = [r for r in responses if r.status_code == 503]
    for response in refused:
        assert response.headers["content-type"] == "application/problem+json"
        assert 1 <= int(response.headers["Retry-After"]) <= 30
        assert "in flight" in response.json()["detail"], response.text
    return [r.json() for r in responses if r.status_code == 202], refused


async def test_four_replicas_admit_no_more_orders_in_flight_than_the_one_bound(replicated, order_database):
    shop, stack = replicated, replicated.stack
    urls = stack.urls("order_svc")
    sku = shop.new_sku(10_000)
    # Payment stopped: no order can finish, every accepted one stays in flight.
    stack.stop_service("payment_svc")
    sampler = InFlight(order_database)
    sampling = asyncio.create_task(sampler.run())
    # 40 requests at once (10 on each replica, what its connection pool holds without overflow;
    # the server's connections are shared with the other stacks of the session), 80 in all.
    client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=40))
    try:
        first, refused = _sorted(await _burst(client, urls, shop, sku, 4 * BOUND))
        assert sampler.peak <= BOUND, f"{sampler.peak} orders in flight at once, bound {BOUND}; {len(first)} accepted"
        assert len(first) == BOUND, f"{len(first)} accepted of {4 * BOUND} with nothing finishing, bound {BOUND}"
        assert len(refused) == 3 * BOUND

        # Payment back: as orders finish, the door opens again, on every replica, but never wider.
        restarting = asyncio.create_task(asyncio.to_thread(stack.start_service, "payment_svc"))
        later: list[dict] = []
        deadline = math.inf
        while len(later) < BOUND and time.monotonic() < deadline:
            accepted, _ = _sorted(await _burst(client, urls, shop, sku, 2 * REPLICAS))
            later += accepted
            if restarting.done() and deadline == math.inf:
                await restarting
                deadline = time.monotonic() + 20
            await asyncio.sleep(0.25)
        await restarting
        assert later, "no order admitted in the 20 s after the first ones could finish"
    finally:
        sampler.stop()
        await sampling
        await client.aclose()
        if "payment_svc" not in stack.processes:
            stack.start_service("payment_svc")
    assert sampler.peak <= BOUND, f"{sampler.peak} orders in flight at once, bound {BOUND}"
    assert sampler.samples > 50, "the in-flight count was hardly sampled"
    for placed in first + later:  # completed, or compensated if payment's absence outlasted its step
        shop.settled(placed, timeout=60)
