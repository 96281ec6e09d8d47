"""A rush on an idle system is admitted: the bound starts from what a deployment may carry
(``ORDER_MIN_IN_FLIGHT``, then the best rate it has shown), not from the nothing an idle
system finishes. On a fresh stack, which has shown nothing yet: 50 orders at once (10 at a
time), then 200 in one minute. Every one is accepted and every saga completes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import eventually
from tests.e2e.conftest import Shop, _stack


@pytest.fixture(scope="module")
def idle_shop(tmp_path_factory, postgres_server, topologies):
    with _stack(tmp_path_factory.mktemp("burst"), postgres_server, topologies) as running:
        yield Shop(running)


def _place_all(shop: Shop, bodies: list[dict], *, at: list[float] | None = None) -> list[httpx.Response]:
    started = time.monotonic()

    def place(index: int) -> httpx.Response:
        if at is not None:
            time.sleep(max(0.0, started + at[index] - time.monotonic()))
        with httpx.Client(timeout=30) as client:
            return client.post(shop.url("order_svc", "/orders"), json=bodies[index])

    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(pool.map(place, range(len(bodies))))


def _all_completed(shop: Shop, answers: list[httpx.Response]) -> None:
    saga_ids = [a.json()["saga_id"] for a in answers]

    def statuses() -> dict[str, int] | None:
        seen: dict[str, int] = {}
        for saga_id in saga_ids:
            saga = shop.saga(saga_id)
            status = saga["status"] if saga else "missing"
            seen[status] = seen.get(status, 0) + 1
        return seen if seen == {"completed": len(saga_ids)} else None

    eventually(statuses, timeout=120, interval=1, what=f"{len(saga_ids)} sagas completed")


def test_a_rush_on_an_idle_stack_is_admitted_and_every_saga_completes(idle_shop):
    sku = idle_shop.new_sku(available=10_000)
    burst = _place_all(idle_shop, [idle_shop.order_body(sku, 1, customer_id=f"c-burst-{i}") for i in range(50)])
    assert [a.status_code for a in burst] == [202] * 50, sorted({a.text for a in burst if a.status_code != 202})
    _all_completed(idle_shop, burst)
    steady = _place_all(
        idle_shop,
        [idle_shop.order_body(sku, 1, customer_id=f"c-steady-{i % 40}") for i in range(200)],
        at=[i * 0.3 for i in range(200)],
    )
    assert [a.status_code for a in steady] == [202] * 200, sorted({a.text for a in steady if a.status_code != 202})
    _all_completed(idle_shop, steady)
    assert idle_shop.stock(sku)["available"] == 10_000 - 250
