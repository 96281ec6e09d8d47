"""The audit log: who did what, to which target, with what outcome, from where.

Every service keeps its own, in its own database (``audit_log``, built by the library's
migrations, append-only: a trigger refuses UPDATE, DELETE and TRUNCATE to everyone). It
records every operator request that writes, whatever its outcome, and every refused one,
reads included: no token or a wrong one (401), a role too small (403). The console records
its sign-ins, sign-outs and actions in the orchestrator's. ``GET /operator/audit`` reads a
service's log (``sagactl audit``; the console's Audit page shows the orchestrator's).

Nothing a request carries is recorded beyond its route, the path's ids and the caller's
address: no token, no body (which may hold a person's address).

An entry is written in a transaction of its own once the outcome is known. Should the
database fail just then, the entry is logged as ``audit_unrecorded`` with every field, so
CloudWatch Logs still holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from fastapi import Request
from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .identity import Identity

log = structlog.get_logger("audit")

OUTCOMES = ("ok", "refused", "denied", "failed")
ANONYMOUS = "anonymous"
"""The actor of a request that proved no identity."""


def outcome_of(status: int) -> str:
    if status in (401, 403):
        return "denied"
    if status >= 500:
        return "failed"
    if status >= 400:
        return "refused"
    return "ok"


@dataclass(frozen=True)
class Entry:
    actor: str
    role: str | None
    action: str
    target: str
    status: int
    source: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return outcome_of(self.status)

    def row(self) -> dict[str, Any]:
        return {
            "actor": self.actor[:100],
            "role": self.role,
            "action": self.action[:100],
            "target": self.target[:300],
            "outcome": self.outcome,
            "status": self.status,
            "source": (self.source or "")[:100] or None,
            "detail": self.detail,
        }


def entry(request: Request, identity: Identity | None, action: str, status: int, **detail: Any) -> Entry:
    """The entry for ``request``: its path is the target (ids only: no route takes personal
    data in its path), the peer's address the source, and what the load balancer says the
    client was (X-Forwarded-For, as claimed) in the detail."""
    forwarded = request.headers.get("x-forwarded-for")
    return Entry(
        actor=identity.name if identity else ANONYMOUS,
        role=identity.role.value if identity else None,
        action=action,
        target=request.url.path,
        status=status,
        source=request.client.host if request.client else None,
        detail={"method": request.method, **({"forwarded_for": forwarded[:200]} if forwarded else {}), **detail},
    )


class AuditLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], table: Table, service: str) -> None:
        self.sessions, self.table, self.service = sessions, table, service

    async def record(self, item: Entry) -> None:
        row = item.row()
        log.info("audited", service=self.service, **{k: v for k, v in row.items() if k != "detail"})
        try:
            async with self.sessions.begin() as db:
                await db.execute(insert(self.table).values(**row))
        except Exception as error:  # noqa: BLE001 - the action's answer must not depend on it
            log.error("audit_unrecorded", service=self.service, error_type=type(error).__name__, **row)

    async def read(
        self,
        db: AsyncSession,
        *,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """The newest entries first, filtered; ``before_id`` pages back."""
        c = self.table.c
        query = select(self.table).order_by(c.id.desc()).limit(limit)
        for column, value in ((c.actor, actor), (c.action, action), (c.outcome, outcome)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(c.at >= since)
        if before_id is not None:
            query = query.where(c.id < before_id)
        return [dict(row._mapping) for row in await db.execute(query)]
