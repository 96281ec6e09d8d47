"""Erasure on request: ``sagactl erase --customer`` reaches every service by message. The
customer's email and address are gone from every database (orders, the sagas' data,
notifications, card fingerprints), another customer's are untouched, the books still balance,
and the audit trail has the request under the operator's name."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg

from messaging.database import asyncpg_dsn
from tests.e2e.conftest import sagactl


def _rows(stack, module: str, sql: str, *args):
    async def fetch():
        connection = await asyncpg.connect(asyncpg_dsn(stack.service_database_url(module)))
        try:
            return [dict(r) for r in await connection.fetch(sql, *args)]
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_an_erasure_removes_a_customer_s_personal_data_everywhere_and_keeps_the_books(stack, shop):
    sku = shop.new_sku(available=10)
    customer, other = f"c-erase-{uuid.uuid4().hex[:8]}", f"c-keep-{uuid.uuid4().hex[:8]}"
    theirs = [shop.place(shop.order_body(sku, 1, customer_id=customer, customer_email="erase.me@example.com")) for _ in range(2)]
    kept = shop.place(shop.order_body(sku, 1, customer_id=other, customer_email="keep.me@example.com"))
    for placed in (*theirs, kept):
        order, saga = shop.settled(placed)
        assert saga["status"] == "completed"
    order_ids = [uuid.UUID(p["order_id"]) for p in theirs]
    charged_before = [shop.payments(p["order_id"])["charged"] for p in theirs]

    printed = sagactl(stack, "erase", "--customer", customer, "--reason", "data subject request DSR-1")
    assert "completed" in printed, printed

    orders = _rows(
        stack, "order_svc", "SELECT customer_email, shipping_address, total FROM orders WHERE customer_id = $1", customer
    )
    assert len(orders) == 2 and all(o["customer_email"] is None and o["shipping_address"] is None for o in orders)
    assert all(o["total"] == Decimal("12.50") for o in orders), "the order keeps its amounts"
    [other_order] = _rows(stack, "order_svc", "SELECT customer_email FROM orders WHERE customer_id = $1", other)
    assert other_order["customer_email"] == "keep.me@example.com"
    sagas = _rows(stack, "orchestrator", "SELECT data FROM sagas WHERE data ->> 'customer_id' = $1", customer)
    assert len(sagas) == 2 and not any("erase.me" in str(s["data"]) for s in sagas)
    notes = _rows(
        stack,
        "notification_svc",
        "SELECT recipient, subject, body FROM notifications WHERE order_id = ANY($1::uuid[])",
        order_ids,
    )
    assert notes and all(n["recipient"] is None and n["subject"] is None and n["body"] is None for n in notes)
    fingerprints = _rows(
        stack, "payment_svc", "SELECT token_fingerprint FROM payments WHERE order_id = ANY($1::uuid[])", order_ids
    )
    assert fingerprints and all(f["token_fingerprint"] is None for f in fingerprints)
    # The books still balance: what was charged is still there, the stock as the orders left it.
    assert [shop.payments(p["order_id"])["charged"] for p in theirs] == charged_before
    assert shop.stock(sku)["available"] == 7
    # The request is in the audit trail, under the operator's name.
    audit = shop.operator.get(shop.url("orchestrator", "/operator/audit"), params={"limit": 500}).json()
    assert any("erasures" in e["target"] and e["outcome"] == "ok" and e["actor"] == "bootstrap" for e in audit), audit[:5]
    [listed] = shop.operator.get(shop.url("orchestrator", "/operator/erasures"), params={"customer_id": customer}).json()
    assert listed["status"] == "completed" and listed["requested_by"] == "bootstrap" and listed["orders"] == 2
    assert set(listed["answers"]) == {"orchestrator", "order", "inventory", "payment", "fulfillment", "notification"}
