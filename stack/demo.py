"""``make demo``: one order per outcome, and a table of what happened to each."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
from rich.console import Console
from rich.table import Table

# The demo's catalogue (documented in the README).
SEED_STOCK = {"SKU-1": 100, "SKU-2": 50, "SKU-3": 5}
FINAL = {"completed", "compensated", "needs_intervention"}


@dataclass(frozen=True, eq=False)
class Scenario:
    trigger: str
    expect: str
    changes: dict = field(default_factory=dict)
    address: dict = field(default_factory=dict)


SCENARIOS = (
    Scenario("tok_visa (success)", "completed"),
    Scenario("SKU-3 x10 (out of stock)", "compensated", {"items": [{"sku": "SKU-3", "quantity": 10, "unit_price": "4.00"}]}),
    Scenario("SKU-404 (unknown sku)", "compensated", {"items": [{"sku": "SKU-404", "quantity": 1, "unit_price": "4.00"}]}),
    Scenario("tok_chargeDeclined", "compensated", {"payment_token": "tok_chargeDeclined"}),
    Scenario("country AQ (undeliverable)", "compensated", address={"country": "AQ"}),
    Scenario("ada@bounce.test (email bounces)", "compensated", {"customer_email": "ada@bounce.test"}),
    Scenario("tok_refundFail + country AQ", "needs_intervention", {"payment_token": "tok_refundFail"}, {"country": "AQ"}),
)


def order_body(scenario: Scenario) -> dict:
    body = {
        "customer_id": "c-demo", "customer_email": "ada@example.com", "currency": "USD",
        "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": "12.50"},
                  {"sku": "SKU-2", "quantity": 1, "unit_price": "30.00"}],
        "payment_token": "tok_visa",
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Springfield",
                             "postal_code": "12345", "country": "US"},
    }
    body.update(scenario.changes)
    body["shipping_address"].update(scenario.address)
    return body


def run(urls: dict[str, str], console: Console | None = None, timeout: float = 60, *, token: str) -> bool:
    """Place every scenario's order at once and report. True when each ended as expected.
    ``token`` is the operator token, which setting stock levels needs."""
    console = console or Console()
    http = httpx.Client(timeout=10)
    for sku, available in SEED_STOCK.items():
        http.put(f"{urls['inventory_svc']}/stock/{sku}", json={"available": available},
                 headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    started = {}
    for scenario in SCENARIOS:
        response = http.post(f"{urls['order_svc']}/orders", json=order_body(scenario))
        response.raise_for_status()
        started[scenario] = (response.json(), time.monotonic())
    results = {}
    deadline = time.monotonic() + timeout
    while len(results) < len(started) and time.monotonic() < deadline:
        for scenario, (placed, t0) in started.items():
            if scenario in results:
                continue
            saga = http.get(f"{urls['orchestrator']}/sagas/{placed['saga_id']}")
            if saga.status_code == 200 and saga.json()["status"] in FINAL:
                order = http.get(f"{urls['order_svc']}/orders/{placed['order_id']}").json()
                if order["status"] != "pending":
                    results[scenario] = (order, saga.json(), time.monotonic() - t0)
        time.sleep(0.05)

    table = Table(title="Order saga demo: one order per outcome")
    for column in ("order", "trigger", "order status", "saga status", "failed step", "time taken", "as expected"):
        table.add_column(column)
    all_ok = True
    for scenario, (placed, _) in started.items():
        if scenario not in results:
            all_ok = False
            table.add_row(placed["order_id"][:8], scenario.trigger, "?", "(not finished)", "", f">{timeout:.0f}s", "no")
            continue
        order, saga, elapsed = results[scenario]
        ok = saga["status"] == scenario.expect
        all_ok &= ok
        table.add_row(order["order_id"][:8], scenario.trigger, order["status"], saga["status"],
                      saga["failed_step"] or "-", f"{elapsed:.2f}s", "yes" if ok else "NO")
    console.print(table)
    return all_ok
