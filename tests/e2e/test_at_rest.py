"""Nothing secret or personal is kept past its use: after orders of every outcome, every
table of every service is scanned for payment tokens, the email address and the street line."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from stack import infra
from stack.services import SERVICES
from tests.conftest import eventually

pytestmark = pytest.mark.e2e

# Where each kind of value may stay: order_svc is the order's system of record.
ALLOWED = {"email": {("order", "orders")}, "street": {("order", "orders")}, "token": set()}


async def _hits(urls: dict[str, str], needles: dict[str, str]) -> dict[tuple[str, str, str], int]:
    """(database, table, kind) -> rows whose text contains the needle, outside ALLOWED."""
    hits = {}
    for database, url in urls.items():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                tables = (
                    (
                        await connection.execute(
                            text(
                                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                                "AND table_type = 'BASE TABLE'"
                            )
                        )
                    )
                    .scalars()
                    .all()
                )
                for table in tables:
                    for kind, needle in needles.items():
                        if (database, table) in ALLOWED[kind]:
                            continue
                        # A row cast to text holds every column, JSON and all.
                        count = (
                            await connection.execute(
                                text(f'SELECT count(*) FROM "{table}" AS t WHERE strpos(t::text, :needle) > 0'),
                                {"needle": needle},
                            )
                        ).scalar()
                        if count:
                            hits[(database, table, kind)] = count
        finally:
            await engine.dispose()
    return hits


def test_no_token_email_or_street_line_is_kept_past_its_use(shop):
    tag = uuid.uuid4().hex[:12]
    email, street = f"scan-{tag}@example.com", f"{tag} Scan Street"
    sku = shop.new_sku(100)
    placed = []
    for token, country, mail in (
        ("tok_visa", "US", email),  # completed
        ("tok_visa", "AQ", email),  # compensated after fulfill_order
        ("tok_chargeDeclined", "US", email),  # compensated at process_payment
        ("tok_visa", "US", f"scan-{tag}@bounce.test"),  # compensated at send_confirmation
        ("tok_refundFail", "AQ", email),
    ):  # needs intervention
        body = shop.order_body(sku, quantity=1, payment_token=token, customer_email=mail)
        body["shipping_address"].update(line1=street, country=country)
        placed.append(shop.place(body, **{"Idempotency-Key": str(uuid.uuid4())}))
    statuses = {shop.settled(p)[1]["status"] for p in placed}
    assert statuses == {"completed", "compensated", "needs_intervention"}

    stack = shop.stack
    urls = infra.database_urls(stack.database_url, stack.prefix, [s.database for s in SERVICES])
    needles = {"email": email, "street": street, "token": "tok_"}
    # Rows leave as the relays publish and the email worker sends: wait for the last of them.
    try:
        eventually(lambda: not asyncio.run(_hits(urls, needles)), timeout=20, what="no secrets at rest")
    except AssertionError:
        pytest.fail(f"found at rest: {asyncio.run(_hits(urls, needles))}")
