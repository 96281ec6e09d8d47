"""Purging what the messaging tables no longer need.

Published outbox rows are kept for a while to help investigations, then deleted. Inbox rows
must outlive every possible redelivery of their message: SQS keeps a message at most 14
days (and a dead-letter queue keeps its original enqueue time), so 15 days is safe. The step
guard's rows are kept ``SAGA_GUARD_RETENTION_DAYS``. A service may name rows of its own tables
that expire too (:class:`Expiry`), or any other bounded statement (:class:`Batched`: a purge
that also writes a tombstone, or a masking of personal data).

Every statement touches at most ``BATCH`` rows and commits, and the janitor repeats it until a
batch comes back short: each transaction is short, so purging a large backlog runs beside the
load instead of locking it out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import structlog
from sqlalchemy import CursorResult, Table, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = structlog.get_logger("janitor")

INBOX_RETENTION = timedelta(days=15)
BATCH = 5000

# Deleting in batches keeps each transaction short on a large backlog.
_PURGE_OUTBOX = text(
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at < now() - CAST(:keep AS interval) "
    "ORDER BY id LIMIT :batch)"
)
_PURGE_INBOX = text(
    "DELETE FROM inbox WHERE ctid IN (SELECT ctid FROM inbox WHERE received_at < now() - CAST(:keep AS interval) LIMIT :batch)"
)


_PURGE_GUARD = text(
    "DELETE FROM saga_step_guard WHERE ctid IN (SELECT ctid FROM saga_step_guard "
    "WHERE updated_at < now() - CAST(:keep AS interval) LIMIT :batch)"
)


@dataclass(frozen=True)
class Expiry:
    """Rows of ``table`` are deleted once their ``column`` (a timestamp) is older than ``keep``."""

    table: Table
    column: str
    keep: timedelta

    def statement(self) -> TextClause:
        name, column = self.table.name, self.table.c[self.column].name  # names from code, never from input
        return text(
            f"DELETE FROM {name} WHERE ctid IN (SELECT ctid FROM {name} "
            f"WHERE {column} < now() - CAST(:keep AS interval) LIMIT :batch)"
        )

    @property
    def name(self) -> str:
        return self.table.name


@dataclass(frozen=True)
class Batched:
    """A statement of the service's own, run by the janitor like an expiry: it takes ``:keep``
    (an interval) and ``:batch`` and touches at most ``:batch`` rows, returning how many."""

    name: str
    sql: str
    keep: timedelta

    def statement(self) -> TextClause:
        return text(self.sql)


Purge = Expiry | Batched


async def purge(
    sessions: async_sessionmaker[AsyncSession],
    *,
    outbox_retention: timedelta,
    inbox_retention: timedelta = INBOX_RETENTION,
    guard_retention: timedelta | None = None,
    expiring: Sequence[Purge] = (),
) -> dict[str, int]:
    """Delete published outbox rows, inbox rows, step-guard rows and ``expiring`` rows older
    than their retention; returns counts per table (or per name)."""
    if inbox_retention < INBOX_RETENTION:
        raise ValueError(f"inbox rows must be kept at least {INBOX_RETENTION.days} days, or a redelivery is handled twice")
    counts = {}
    purges = [("outbox", _PURGE_OUTBOX, outbox_retention), ("inbox", _PURGE_INBOX, inbox_retention)]
    if guard_retention is not None:
        if guard_retention < INBOX_RETENTION:
            raise ValueError(f"step-guard rows must be kept at least {INBOX_RETENTION.days} days, as inbox rows")
        purges.append(("saga_step_guard", _PURGE_GUARD, guard_retention))
    purges += [(e.name, e.statement(), e.keep) for e in expiring]
    for table, statement, keep in purges:
        counts[table] = 0
        while True:
            async with sessions() as session, session.begin():
                result = await session.execute(statement, {"keep": keep, "batch": BATCH})
                deleted = cast(CursorResult[Any], result).rowcount
            counts[table] += deleted
            if deleted < BATCH:
                break
    return counts


async def run(
    sessions: async_sessionmaker[AsyncSession],
    stop: asyncio.Event,
    *,
    service: str,
    outbox_retention: timedelta,
    guard_retention: timedelta | None = None,
    expiring: Sequence[Purge] = (),
    interval: float = 3600,
) -> None:
    while not stop.is_set():
        try:
            counts = await purge(sessions, outbox_retention=outbox_retention, guard_retention=guard_retention, expiring=expiring)
            if any(counts.values()):
                log.info("purged", service=service, **counts)
        except Exception:  # noqa: BLE001 - retried at the next interval
            log.exception("purge_failed", service=service)
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
