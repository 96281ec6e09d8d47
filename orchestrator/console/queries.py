"""What the console reads from the orchestrator's database: counts, the last hour, sagas
that need a person, and the saga list paged by keyset."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.http import utc

from ..engine import SagaStatus
from ..tables import sagas

SUMMARY = (
    sagas.c.saga_id,
    sagas.c.definition,
    sagas.c.status,
    sagas.c.subject.label("order_id"),
    sagas.c.failed_step,
    sagas.c.failure_reason,
    sagas.c.created_at,
    sagas.c.updated_at,
)
"""The list's columns: never the saga's data or steps, so a page stays small."""


async def counts(session: AsyncSession) -> dict[str, dict[str, int]]:
    """Sagas by definition, then by status."""
    query = select(sagas.c.definition, sagas.c.status, func.count()).group_by(sagas.c.definition, sagas.c.status)
    found: dict[str, dict[str, int]] = {}
    for definition, status, count in (await session.execute(query)).all():
        found.setdefault(definition, {})[status] = count
    return found


async def last_hour(session: AsyncSession, now: datetime) -> list[tuple[datetime, str, int]]:
    """(minute, current status, how many) for the sagas started in the hour before ``now``."""
    minute = func.date_trunc("minute", sagas.c.created_at)
    query = (
        select(minute, sagas.c.status, func.count())
        .where(sagas.c.created_at > now - timedelta(hours=1))
        .group_by(minute, sagas.c.status)
    )
    return [tuple(row) for row in (await session.execute(query)).all()]


async def needing_attention(session: AsyncSession, stuck_before: datetime, limit: int = 20) -> tuple[list, list]:
    """Sagas in ``needs_intervention`` (oldest first), and those in ``running`` or
    ``compensating`` with no transition since ``stuck_before``."""
    waiting = select(*SUMMARY).where(sagas.c.status == SagaStatus.NEEDS_INTERVENTION).order_by(sagas.c.updated_at).limit(limit)
    stuck = (
        select(*SUMMARY)
        .where(sagas.c.status.in_((SagaStatus.RUNNING, SagaStatus.COMPENSATING)), sagas.c.updated_at < stuck_before)
        .order_by(sagas.c.updated_at)
        .limit(limit)
    )
    return list((await session.execute(waiting)).all()), list((await session.execute(stuck)).all())


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    definition: str | None = None
    order_id: uuid.UUID | None = None
    older_than: timedelta | None = None
    """Only sagas started at least this long ago."""
    newer_than: timedelta | None = None
    """Only sagas started at most this long ago."""
    customer_id: str | None = None
    """Only sagas whose data names this customer (the order saga's ``customer_id``)."""
    failed_step: str | None = None
    version: int | None = None


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: the last row shown, in the list's order."""

    created_at: datetime
    saga_id: uuid.UUID

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.created_at.isoformat()}|{self.saga_id}".encode()).decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raises ValueError for anything this did not encode."""
        try:
            created_at, saga_id = base64.urlsafe_b64decode(text.encode()).decode().split("|")
            return cls(utc(datetime.fromisoformat(created_at)), uuid.UUID(saga_id))
        except (ValueError, UnicodeError) as error:
            raise ValueError("not a page cursor") from error


def listing_query(filters: Filters, after: Cursor | None, limit: int, now: datetime) -> Select:
    """Newest first by (created_at, saga_id): each page continues strictly after the last
    row of the previous one, an index range scan on ``sagas_newest`` (or
    ``sagas_by_status_newest`` with a status) rather than an OFFSET that reads every row before it."""
    query = select(*SUMMARY).order_by(sagas.c.created_at.desc(), sagas.c.saga_id.desc()).limit(limit)
    conditions = []
    if filters.status:
        conditions.append(sagas.c.status == filters.status)
    if filters.definition:
        conditions.append(sagas.c.definition == filters.definition)
    if filters.order_id:
        conditions.append(sagas.c.subject == str(filters.order_id))
    if filters.customer_id:
        conditions.append(sagas.c.data["customer_id"].astext == filters.customer_id)
    if filters.failed_step:
        conditions.append(sagas.c.failed_step == filters.failed_step)
    if filters.version is not None:
        conditions.append(sagas.c.definition_version == filters.version)
    if filters.older_than is not None:
        conditions.append(sagas.c.created_at <= now - filters.older_than)
    if filters.newer_than is not None:
        conditions.append(sagas.c.created_at >= now - filters.newer_than)
    if after is not None:
        conditions.append(tuple_(sagas.c.created_at, sagas.c.saga_id) < tuple_(after.created_at, after.saga_id))
    return query.where(and_(*conditions)) if conditions else query


async def page(
    session: AsyncSession, filters: Filters, after: Cursor | None, limit: int, now: datetime
) -> tuple[list, Cursor | None]:
    """One page of sagas and the cursor of the next, None on the last page."""
    rows = list((await session.execute(listing_query(filters, after, limit + 1, now))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, Cursor(rows[-1].created_at, rows[-1].saga_id) if more else None
