"""``make demo``: one order per outcome, and a table of what happened to each."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from orchestrator.engine import FINAL_STATUSES
from orchestrator.engine import SagaStatus as S

# The demo's catalogue (documented in the README).
SEED_STOCK = {"SKU-1": 100, "SKU-2": 50, "SKU-3": 5}


@dataclass(frozen=True, eq=False)
class Scenario:
    trigger: str
    expect: str
    changes: dict = field(default_factory=dict)
    address: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Cancellation:
    """The customer then cancels an order that was confirmed; ``dispatch`` ships it first."""

    trigger: str
    expect: str
    dispatch: bool = False


CANCELLATIONS = (
    Cancellation("cancel (success)", S.COMPLETED),
    Cancellation("dispatch, then cancel (refused)", S.COMPENSATED, dispatch=True),
)


SCENARIOS = (
    Scenario("tok_visa (success)", S.COMPLETED),
    Scenario("SKU-3 x10 (out of stock)", S.COMPENSATED, {"items": [{"sku": "SKU-3", "quantity": 10, "unit_price": "4.00"}]}),
    Scenario("SKU-404 (unknown sku)", S.COMPENSATED, {"items": [{"sku": "SKU-404", "quantity": 1, "unit_price": "4.00"}]}),
    Scenario("tok_chargeDeclined", S.COMPENSATED, {"payment_token": "tok_chargeDeclined"}),
    Scenario("country AQ (undeliverable)", S.COMPENSATED, address={"country": "AQ"}),
    Scenario("ada@bounce.test (email bounces)", S.COMPENSATED, {"customer_email": "ada@bounce.test"}),
    Scenario("tok_refundFail + country AQ", S.NEEDS_INTERVENTION, {"payment_token": "tok_refundFail"}, {"country": "AQ"}),
)


def order_body(scenario: Scenario) -> dict:
    body: dict[str, Any] = {
        "customer_id": "c-demo",
        "customer_email": "ada@example.com",
        "currency": "USD",
        "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": "12.50"}, {"sku": "SKU-2", "quantity": 1, "unit_price": "30.00"}],
        "payment_token": "tok_visa",
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"},
    }
    body.update(scenario.changes)
    body["shipping_address"].update(scenario.address)
    return body


def run(urls: dict[str, str], console: Console | None = None, timeout: float = 60, *, token: str) -> bool:
    """Place every scenario's order at once and report. True when each ended as expected.
    ``token`` is the operator token, which setting stock levels needs."""
    console = console or Console()
    # The operator's token: setting stock, reading shipments and dispatching one need it.
    http = httpx.Client(timeout=10, headers={"Authorization": f"Bearer {token}"})
    for sku, available in SEED_STOCK.items():
        http.put(f"{urls['inventory_svc']}/stock/{sku}", json={"available": available}).raise_for_status()
    started = {}
    for scenario in SCENARIOS + CANCELLATIONS:
        body = order_body(scenario if isinstance(scenario, Scenario) else SCENARIOS[0])
        response = http.post(f"{urls['order_svc']}/orders", json=body)
        response.raise_for_status()
        started[scenario] = (response.json(), time.monotonic())
    results = _settle(http, urls, started, timeout)
    all_ok = _orders_table(console, started, results, timeout)
    confirmed = {c: started[c][0] for c in CANCELLATIONS if c in results and results[c][0]["status"] == "confirmed"}
    return _cancel(http, urls, console, confirmed, timeout) and all_ok and len(confirmed) == len(CANCELLATIONS)


def _settle(http: httpx.Client, urls: dict[str, str], started: dict, timeout: float) -> dict:
    """Wait for each saga to be final and its order to show it: ``{key: (order, saga, seconds)}``."""
    results: dict[Any, tuple[dict[str, Any], dict[str, Any], float]] = {}
    deadline = time.monotonic() + timeout
    while len(results) < len(started) and time.monotonic() < deadline:
        for key, (placed, t0) in started.items():
            if key in results:
                continue
            saga = http.get(f"{urls['orchestrator']}/sagas/{placed['saga_id']}")
            if saga.status_code == 200 and saga.json()["status"] in FINAL_STATUSES:
                order = http.get(f"{urls['order_svc']}/orders/{placed['order_id']}").json()
                if order["status"] != "pending" and {s["status"] for s in order["sagas"]} <= FINAL_STATUSES:
                    results[key] = (order, saga.json(), time.monotonic() - t0)
        time.sleep(0.05)
    return results


def _orders_table(console: Console, started: dict, results: dict, timeout: float) -> bool:
    def label(key: Scenario | Cancellation) -> tuple[str, str]:
        return (key.trigger, key.expect) if isinstance(key, Scenario) else ("tok_visa (cancelled below)", S.COMPLETED)

    return _table(console, "Order saga demo: one order per outcome", started, results, timeout, label)


def _cancel(http: httpx.Client, urls: dict[str, str], console: Console, orders: dict, timeout: float) -> bool:
    """Cancel each confirmed order as its customer would, and report the cancellation sagas."""
    started = {}
    for cancellation, placed in orders.items():
        if cancellation.dispatch:
            [shipment] = http.get(f"{urls['fulfillment_svc']}/shipments", params={"order_id": placed["order_id"]}).json()
            http.post(f"{urls['fulfillment_svc']}/shipments/{shipment['shipment_id']}/dispatch").raise_for_status()
        response = http.post(f"{urls['order_svc']}/orders/{placed['order_id']}/cancel")
        response.raise_for_status()
        started[cancellation] = (response.json(), time.monotonic())
    results = _settle(http, urls, started, timeout)
    return _table(
        console,
        "Customer cancellations (order_cancellation saga)",
        started,
        results,
        timeout,
        lambda key: (key.trigger, key.expect),
    )


def _table(console: Console, title: str, started: dict, results: dict, timeout: float, label) -> bool:
    """Print one row per saga; True when each ended as ``label(key)`` expects."""
    table = Table(title=title)
    for column in ("order", "trigger", "order status", "saga status", "failed step", "time taken", "as expected"):
        table.add_column(column)
    all_ok = True
    for key, (placed, _) in started.items():
        trigger, expect = label(key)
        if key not in results:
            all_ok = False
            table.add_row(placed["order_id"][:8], trigger, "?", "(not finished)", "", f">{timeout:.0f}s", "no")
            continue
        order, saga, elapsed = results[key]
        ok = saga["status"] == expect
        all_ok &= ok
        table.add_row(
            order["order_id"][:8],
            trigger,
            order["status"],
            saga["status"],
            saga["failed_step"] or "-",
            f"{elapsed:.2f}s",
            "yes" if ok else "NO",
        )
    console.print(table)
    return all_ok
