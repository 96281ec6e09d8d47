"""Data with a lifetime: the janitor purges finished sagas past their retention, with their
history, in bounded batches, leaving a tombstone; every saga not yet final stays, however old."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from messaging import janitor
from orchestrator import repository

pytestmark = pytest.mark.integration

_SAGAS = text(
    """
    INSERT INTO sagas (saga_id, definition, definition_version, subject, status, data, steps, created_at, updated_at)
    SELECT gen_random_uuid(), 'order', 1, 'order-' || n, :status, '{"customer_id": "c-1"}'::jsonb, '[]'::jsonb,
           now() - CAST(:age AS interval), now() - CAST(:age AS interval)
    FROM generate_series(1, :count) AS n
    """
)
_HISTORY = text("INSERT INTO saga_history (saga_id, at, event, step) SELECT saga_id, created_at, 'saga_started', NULL FROM sagas")


async def _count(session, sql: str) -> int:
    return (await session.execute(text(sql))).scalar_one()


async def test_finished_sagas_past_their_retention_are_purged_in_batches_and_the_others_stay(orchestrator_db, monkeypatch):
    monkeypatch.setattr(janitor, "BATCH", 700)  # eight short transactions rather than one long one
    async with orchestrator_db() as session, session.begin():
        for status, age, count in [
            ("completed", timedelta(days=100), 4000),
            ("compensated", timedelta(days=100), 1000),
            ("running", timedelta(days=100), 30),  # not final, however old: it stays
            ("needs_intervention", timedelta(days=100), 20),  # waits for a person
            ("completed", timedelta(days=10), 50),  # within its retention
        ]:
            await session.execute(_SAGAS, {"status": status, "age": age, "count": count})
        await session.execute(_HISTORY)
    counts = await janitor.purge(
        orchestrator_db,
        outbox_retention=timedelta(days=7),
        expiring=[janitor.Batched("sagas", repository.PURGE_FINISHED, timedelta(days=90))],
    )
    assert counts["sagas"] == 5000
    async with orchestrator_db() as session:
        left = dict((await session.execute(text("SELECT status, count(*) FROM sagas GROUP BY status"))).all())
        assert left == {"running": 30, "needs_intervention": 20, "completed": 50}
        assert await _count(session, "SELECT count(*) FROM saga_history") == 100, "the history of the purged went with them"
        assert await _count(session, "SELECT count(*) FROM purged_sagas") == 5000
        gone = (await session.execute(text("SELECT saga_id FROM purged_sagas LIMIT 1"))).scalar_one()
        tombstone = await repository.purged(session, gone)
        assert tombstone is not None and tombstone["status"] in ("completed", "compensated") and tombstone["archive"] is None
