"""The console's reads on real PostgreSQL with 100,000 sagas: every page is an index range
(no sort, no scan of the table, whatever the page), and paging sees every saga once."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from orchestrator.console import queries

pytestmark = pytest.mark.integration
SAGAS = 100_000
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
async def db(orchestrator_db):
    async with orchestrator_db() as session, session.begin():
        # One saga a second back from now; every 20th needs a person, every 10th is of a second definition.
        await session.execute(
            text("""
            INSERT INTO sagas (saga_id, definition, subject, status, data, steps, created_at, updated_at)
            SELECT gen_random_uuid(), CASE WHEN i % 10 = 5 THEN 'order_cancellation' ELSE 'order' END,
                   gen_random_uuid()::text,
                   CASE i % 20 WHEN 0 THEN 'needs_intervention' WHEN 1 THEN 'compensated' WHEN 2 THEN 'compensated'
                               WHEN 3 THEN 'running' WHEN 4 THEN 'compensating' ELSE 'completed' END,
                   '{}'::jsonb, '[]'::jsonb, CAST(:now AS timestamptz) - i * interval '1 second',
                   CAST(:now AS timestamptz) - i * interval '1 second'
            FROM generate_series(1, :n) AS i"""),
            {"now": NOW, "n": SAGAS},
        )
        await session.execute(text("ANALYZE sagas"))
    return orchestrator_db


def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


async def explain(session, query) -> list[dict]:
    """The plan of exactly the statement the console runs, with its own parameters."""
    connection = await session.connection()
    compiled = query.compile(dialect=connection.dialect)
    values = tuple(compiled.params[name] for name in compiled.positiontup)
    result = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", values)
    plan = result.scalar()
    return list(plan_nodes((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]))


async def a_cursor(session, rank: int) -> queries.Cursor:
    row = (
        await session.execute(
            text("SELECT created_at, saga_id FROM sagas ORDER BY created_at DESC, saga_id DESC OFFSET :rank LIMIT 1"),
            {"rank": rank},
        )
    ).one()
    return queries.Cursor(row.created_at, row.saga_id)


BOTH = {"sagas_newest", "sagas_by_status_newest"}


@pytest.mark.parametrize(
    "filters, indexes",
    [
        (queries.Filters(), {"sagas_newest"}),
        # A status most sagas have is read as cheaply from the newest-first index, filtered.
        (queries.Filters(status="completed"), BOTH),
        (queries.Filters(status="needs_intervention"), {"sagas_by_status_newest"}),
        (queries.Filters(definition="order"), {"sagas_newest"}),
        (queries.Filters(status="compensated", definition="order", older_than=timedelta(hours=3)), {"sagas_by_status_newest"}),
        (queries.Filters(newer_than=timedelta(hours=1)), {"sagas_newest"}),
    ],
    ids=["all", "completed", "needs_intervention", "definition", "status-definition-age", "last-hour"],
)
@pytest.mark.parametrize("rank", [None, 90_000], ids=["first-page", "deep-page"])
async def test_every_page_of_the_list_is_an_index_range_without_a_sort(db, filters, indexes, rank):
    async with db() as session:
        after = None if rank is None else await a_cursor(session, rank)
        nodes = await explain(session, queries.listing_query(filters, after, 51, NOW))
    types = [n["Node Type"] for n in nodes]
    assert "Sort" not in types and "Seq Scan" not in types, types
    scan = next(n for n in nodes if n.get("Index Name") in indexes)
    if after is not None:  # the cursor bounds the index range itself, not a filter on rows read
        assert "created_at" in scan.get("Index Cond", ""), scan


async def test_an_order_id_finds_its_saga_through_the_order_index(db):
    async with db() as session:
        order_id = uuid.UUID((await session.execute(text("SELECT subject FROM sagas LIMIT 1"))).scalar())
        nodes = await explain(session, queries.listing_query(queries.Filters(order_id=order_id), None, 51, NOW))
        rows, more = await queries.page(session, queries.Filters(order_id=order_id), None, 50, NOW)
    assert "ix_sagas_subject" in [n.get("Index Name") for n in nodes] and "Seq Scan" not in [n["Node Type"] for n in nodes]
    assert [r.order_id for r in rows] == [str(order_id)] and more is None


async def test_paging_with_a_cursor_sees_every_matching_saga_once_in_order(db):
    filters = queries.Filters(status="needs_intervention", definition="order")
    seen, after = [], None
    async with db() as session:
        while True:
            rows, after = await queries.page(session, filters, after, 1000, NOW)
            seen += rows
            if after is None:
                break
        expected = (
            await session.execute(text("SELECT count(*) FROM sagas WHERE status = 'needs_intervention' AND definition = 'order'"))
        ).scalar()
    assert len(seen) == len({r.saga_id for r in seen}) == expected == SAGAS // 20
    keys = [(r.created_at, r.saga_id) for r in seen]
    assert keys == sorted(keys, reverse=True)
    assert {(r.status, r.definition) for r in seen} == {("needs_intervention", "order")}


async def test_counts_are_grouped_by_definition_then_status(db):
    async with db() as session:
        counts = await queries.counts(session)
    assert set(counts) == {"order", "order_cancellation"}
    assert sum(sum(by_status.values()) for by_status in counts.values()) == SAGAS
    assert counts["order_cancellation"] == {"completed": SAGAS // 10}
    assert counts["order"]["needs_intervention"] == SAGAS // 20


async def test_sagas_needing_a_person_and_those_stuck_past_the_threshold_are_picked_out(db):
    stuck_before = NOW - timedelta(seconds=300)
    async with db() as session:
        waiting, stuck = await queries.needing_attention(session, stuck_before, limit=20)
    assert len(waiting) == len(stuck) == 20
    assert {r.status for r in waiting} == {"needs_intervention"}
    assert {r.status for r in stuck} == {"running", "compensating"}
    assert all(r.updated_at < stuck_before for r in stuck)
    assert [r.updated_at for r in stuck] == sorted(r.updated_at for r in stuck)  # longest stuck first
    async with db() as session:
        _, recent = await queries.needing_attention(session, NOW - timedelta(days=365), limit=20)
    assert recent == []


@pytest.mark.parametrize(
    "filters, index",
    [
        (queries.Filters(customer_id="c-rare"), "sagas_by_customer_newest"),
        (queries.Filters(failed_step="screen_order"), "sagas_by_failed_step_newest"),
        (queries.Filters(definition="order", version=2), "sagas_by_version"),
    ],
    ids=["customer", "failed-step", "version"],
)
async def test_search_by_what_an_operator_knows_finds_exactly_those_sagas_on_an_index(db, filters, index):
    async with db() as session, session.begin():
        ids = [uuid.uuid4() for _ in range(3)]
        for n, saga_id in enumerate(ids):
            await session.execute(
                text(
                    "INSERT INTO sagas (saga_id, definition, definition_version, subject, status, data, steps, failed_step, "
                    "created_at, updated_at) VALUES (:id, 'order', 2, :subject, 'compensated', "
                    "CAST(:data AS jsonb), '[]'::jsonb, 'screen_order', :at, :at)"
                ),
                {
                    "id": saga_id,
                    "subject": str(uuid.uuid4()),
                    "data": json.dumps({"customer_id": "c-rare"}),
                    "at": NOW - timedelta(seconds=n),
                },
            )
        await session.execute(text("ANALYZE sagas"))
        rows, _ = await queries.page(session, filters, None, 50, NOW)
        assert [row.saga_id for row in rows] == ids  # newest first
        used = {node.get("Index Name") for node in await explain(session, queries.listing_query(filters, None, 51, NOW))}
        assert index in used
        await session.rollback()
