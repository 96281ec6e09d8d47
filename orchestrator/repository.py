"""Loading and saving saga state. The row lock taken by :func:`load` serialises every
transition of one saga, across consumers, deadline workers and orchestrator instances."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from .engine import HistoryEntry, SagaState, SagaStatus, StepState, StepStatus
from .tables import paused_definitions, purged_sagas, saga_history, sagas

_TIMES = ("started_at", "finished_at", "deadline")


_SENT = ("command_ids", "compensation_ids")
"""Kept in ``sagas.sent``, not in ``steps``."""
_KNOWN = frozenset(f.name for f in fields(StepState))


def _step_to_json(step: StepState) -> dict:
    raw = asdict(step)
    return {k: (v.isoformat() if k in _TIMES and v else v) for k, v in raw.items() if k not in _SENT}


def _step_from_json(raw: dict, sent: dict | None = None) -> StepState:
    # Keys a later release added are left alone, so that it can run beside this one.
    values: dict[str, Any] = {
        k: (datetime.fromisoformat(v) if k in _TIMES and v else v) for k, v in raw.items() if k in _KNOWN and k not in _SENT
    }
    values |= {k: list(v) for k, v in (sent or {}).items() if k in _SENT}
    step = StepState(**values)
    step.status = StepStatus(step.status)
    return step


def _sent(steps: list[StepState]) -> dict:
    return {s.name: {k: getattr(s, k) for k in _SENT} for s in steps if s.command_ids or s.compensation_ids}


def _row(state: SagaState) -> dict:
    return {
        "definition": state.definition,
        "definition_version": state.version,
        "paused_at": state.paused_at,
        "pause_kind": state.pause_kind,
        "paused_seconds": state.paused_seconds,
        "subject": state.subject,
        "status": state.status,
        "data": state.data,
        "steps": [_step_to_json(s) for s in state.steps],
        "sent": _sent(state.steps),
        "failed_step": state.failed_step,
        "failure_reason": state.failure_reason,
        "next_deadline": state.next_deadline,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
    }


def _state(row) -> SagaState:
    return SagaState(
        saga_id=row.saga_id,
        definition=row.definition,
        version=row.definition_version,
        paused_at=row.paused_at,
        pause_kind=row.pause_kind,
        paused_seconds=row.paused_seconds,
        subject=row.subject,
        status=SagaStatus(row.status),
        data=row.data,
        steps=[_step_from_json(s, (row.sent or {}).get(s["name"])) for s in row.steps],
        created_at=row.created_at,
        updated_at=row.updated_at,
        failed_step=row.failed_step,
        failure_reason=row.failure_reason,
    )


async def load(session: AsyncSession, saga_id: uuid.UUID, *, lock: bool = True) -> SagaState | None:
    query = select(sagas).where(sagas.c.saga_id == saga_id)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    return _state(row) if row else None


async def add(session: AsyncSession, state: SagaState, trace: dict[str, str] | None = None) -> bool:
    """Insert a new saga (with the trace it runs in, if any); False if one with that id exists already."""
    values = {"saga_id": state.saga_id, **_row(state), "trace_context": trace or None}
    statement = pg_insert(sagas).values(**values).on_conflict_do_nothing()
    return (await session.execute(statement.returning(sagas.c.saga_id))).first() is not None


async def save(session: AsyncSession, state: SagaState) -> None:
    """Save a transition; its deadlines are new, so a check may be staged for them as soon as they pass."""
    await session.execute(update(sagas).where(sagas.c.saga_id == state.saga_id).values(**_row(state), deadline_check_at=None))


async def record(
    session: AsyncSession, saga_id: uuid.UUID, entries: list[HistoryEntry], at: datetime, message_id: uuid.UUID | None = None
) -> None:
    if entries:
        await session.execute(
            insert(saga_history),
            [
                {"saga_id": saga_id, "at": at, "event": e.event, "step": e.step, "detail": e.detail, "message_id": message_id}
                for e in entries
            ],
        )


async def due_for_check(
    session: AsyncSession, now: datetime, margin: timedelta, limit: int, runs: Iterable[tuple[str, int]] | None = None
) -> list[uuid.UUID]:
    """Lock sagas whose next deadline passed at least ``margin`` ago and for which no check
    is pending (earliest first); a saga another worker holds is skipped. With ``runs``, only
    sagas of those (definition, version)s: a check for a saga of a version this replica does
    not run is left to a replica that does (and, while none does, waits for one rather than
    bouncing between replicas into the dead-letter queue)."""
    conditions = [
        sagas.c.next_deadline <= now - margin,
        sagas.c.paused_at.is_(None),
        or_(sagas.c.deadline_check_at.is_(None), sagas.c.deadline_check_at <= now),
    ]
    if runs is not None:
        conditions.append(tuple_(sagas.c.definition, sagas.c.definition_version).in_(list(runs)))
    query = (
        select(sagas.c.saga_id).where(*conditions).order_by(sagas.c.next_deadline).limit(limit).with_for_update(skip_locked=True)
    )
    return list((await session.execute(query)).scalars())


async def trace_contexts(session: AsyncSession, saga_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, str]]:
    """The trace context of each of these sagas that has one."""
    if not saga_ids:
        return {}
    query = select(sagas.c.saga_id, sagas.c.trace_context).where(sagas.c.saga_id.in_(saga_ids), sagas.c.trace_context.isnot(None))
    return {row.saga_id: row.trace_context for row in await session.execute(query)}


async def check_not_before(session: AsyncSession, saga_ids: list[uuid.UUID], at: datetime | None) -> None:
    """No further check of these sagas is staged before ``at`` (unless a transition clears it)."""
    if saga_ids:
        await session.execute(update(sagas).where(sagas.c.saga_id.in_(saga_ids)).values(deadline_check_at=at))


async def next_check(session: AsyncSession, margin: timedelta, runs: Iterable[tuple[str, int]] | None = None) -> datetime | None:
    """When the earliest check of any saga (of ``runs``) may be staged (passed or not), None
    when no such saga has a deadline."""
    due = func.greatest(sagas.c.next_deadline + margin, func.coalesce(sagas.c.deadline_check_at, sagas.c.next_deadline))
    conditions = [sagas.c.next_deadline.is_not(None)]
    if runs is not None:
        conditions.append(tuple_(sagas.c.definition, sagas.c.definition_version).in_(list(runs)))
    return (await session.execute(select(func.min(due)).where(*conditions))).scalar_one()


async def existing(session: AsyncSession, saga_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these sagas exist here."""
    if not saga_ids:
        return set()
    return set((await session.execute(select(sagas.c.saga_id).where(sagas.c.saga_id.in_(saga_ids)))).scalars())


async def history(session: AsyncSession, saga_id: uuid.UUID) -> list:
    query = select(saga_history).where(saga_history.c.saga_id == saga_id).order_by(saga_history.c.id)
    return list((await session.execute(query)).all())


async def listing(
    session: AsyncSession,
    *,
    status: str | None,
    limit: int,
    older_than: datetime | None = None,
    definition: str | None = None,
    subject: str | None = None,
    failed_step: str | None = None,
    oldest_first: bool = False,
    version: int | None = None,
    customer_id: str | None = None,
    started_after: datetime | None = None,
    started_before: datetime | None = None,
    saga_ids: Iterable[uuid.UUID] | None = None,
) -> list:
    order = sagas.c.created_at.asc() if oldest_first else sagas.c.created_at.desc()
    query = select(sagas).order_by(order).limit(limit)
    if failed_step:
        query = query.where(sagas.c.failed_step == failed_step)
    if version is not None:
        query = query.where(sagas.c.definition_version == version)
    if customer_id:
        query = query.where(sagas.c.data["customer_id"].astext == customer_id)
    if started_after:
        query = query.where(sagas.c.created_at >= started_after)
    if started_before:
        query = query.where(sagas.c.created_at < started_before)
    if status:
        query = query.where(sagas.c.status == status)
    if definition:
        query = query.where(sagas.c.definition == definition)
    if subject:
        query = query.where(sagas.c.subject == subject)
    if older_than:
        query = query.where(sagas.c.updated_at <= older_than)
    if saga_ids is not None:
        query = query.where(sagas.c.saga_id.in_(list(saga_ids)))
    return [_state(row) for row in (await session.execute(query)).all()]


async def paused_definition(session: AsyncSession, definition: str) -> Any:
    """The pause of ``definition`` (a row with ``actor``, ``reason``, ``paused_at``), or None."""
    query = select(paused_definitions).where(paused_definitions.c.definition == definition)
    return (await session.execute(query)).first()


async def pause_definition(session: AsyncSession, definition: str, at: datetime, actor: str, reason: str) -> bool:
    """Record the pause; False if it was paused already."""
    statement = pg_insert(paused_definitions).values(definition=definition, paused_at=at, actor=actor, reason=reason)
    returning = statement.on_conflict_do_nothing().returning(paused_definitions.c.definition)
    return (await session.execute(returning)).first() is not None


async def resume_definition(session: AsyncSession, definition: str) -> bool:
    statement = delete(paused_definitions).where(paused_definitions.c.definition == definition)
    return (await session.execute(statement.returning(paused_definitions.c.definition))).first() is not None


async def paused_definitions_now(session: AsyncSession) -> list[Any]:
    return list(await session.execute(select(paused_definitions).order_by(paused_definitions.c.definition)))


async def held(session: AsyncSession, definition: str, limit: int) -> list[uuid.UUID]:
    """Sagas of ``definition`` held at their start by its pause, oldest first."""
    query = (
        select(sagas.c.saga_id)
        .where(sagas.c.definition == definition, sagas.c.pause_kind == "definition")
        .order_by(sagas.c.created_at)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def running_by_version(session: AsyncSession) -> list[tuple[str, int, int]]:
    """(definition, version, sagas not final) for every version with sagas not final: when a
    version has none left, it can be retired."""
    query = (
        select(sagas.c.definition, sagas.c.definition_version, func.count())
        .where(sagas.c.status.in_(["running", "compensating"]))
        .group_by(sagas.c.definition, sagas.c.definition_version)
        .order_by(sagas.c.definition, sagas.c.definition_version)
    )
    return [(row[0], row[1], row[2]) for row in await session.execute(query)]


async def count(session: AsyncSession, status: str) -> int:
    """How many sagas are in ``status`` now (an index scan on ``sagas.status``)."""
    return (await session.execute(select(func.count()).select_from(sagas).where(sagas.c.status == status))).scalar_one()


PURGE_FINISHED = """
WITH doomed AS (
    SELECT saga_id, definition, status, updated_at FROM sagas
    WHERE status IN ('completed', 'compensated')
      AND created_at < now() - CAST(:keep AS interval) AND updated_at < now() - CAST(:keep AS interval)
    ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED
), history AS (
    DELETE FROM saga_history WHERE saga_id IN (SELECT saga_id FROM doomed)
), tombstones AS (
    INSERT INTO purged_sagas (saga_id, definition, status, finished_at)
    SELECT saga_id, definition, status, updated_at FROM doomed ON CONFLICT (saga_id) DO NOTHING
)
DELETE FROM sagas WHERE saga_id IN (SELECT saga_id FROM doomed)
"""
"""The janitor's purge of finished sagas past their retention: their history, then the saga,
leaving a tombstone, in one statement of at most ``:batch`` sagas (the oldest first, on the
status-and-creation index; a saga is created before it finishes). A saga a handler holds is
skipped, not waited for. Only completed and compensated sagas are final: any other status
waits for its saga to end or for a person."""


async def purged(session: AsyncSession, saga_id: uuid.UUID) -> dict[str, Any] | None:
    """The tombstone of a saga purged after its retention, if it was."""
    row = (await session.execute(select(purged_sagas).where(purged_sagas.c.saga_id == saga_id))).first()
    return dict(row._mapping) if row is not None else None


async def count_not_run(session: AsyncSession, runs: Iterable[tuple[str, int]]) -> int:
    """Sagas not finished whose (definition, version) is not among ``runs``."""
    query = select(func.count()).where(
        sagas.c.status.notin_(("completed", "compensated")),
        tuple_(sagas.c.definition, sagas.c.definition_version).notin_(list(runs)),
    )
    return int((await session.execute(query)).scalar_one())
