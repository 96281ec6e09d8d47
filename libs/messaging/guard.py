"""The step guard: per (saga, step), what a participant did about a saga step, and the reply
it gave, so a repeated command gets the same answer and a command overtaken by its
compensation is refused (see :mod:`messaging.participant`).

Two implementations with one behaviour, proven by one contract test
(``tests/integration/test_step_guard_contract.py``): :class:`SqlStepGuard` on the service's table, and
:class:`FakeStepGuard` in memory, for handler tests that need no database.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

APPLIED, REFUSED, COMPENSATED, SETTLED = "applied", "refused", "compensated", "settled"

Result = dict[str, Any]

_INSERT = text(
    "INSERT INTO saga_step_guard (saga_id, step, state) VALUES (:saga_id, :step, :state) ON CONFLICT DO NOTHING RETURNING state"
)
_LOCK = text("SELECT state, result FROM saga_step_guard WHERE saga_id = :saga_id AND step = :step FOR UPDATE")
_SET = text(
    "UPDATE saga_step_guard SET state = :state, result = CAST(:result AS jsonb), updated_at = now() "
    "WHERE saga_id = :saga_id AND step = :step"
)


class StepGuard(Protocol):
    async def claim(self, saga_id: uuid.UUID, step: str, state: str) -> tuple[str | None, Result | None]:
        """Record ``state`` for the step if nothing is recorded yet and return ``(None, None)``;
        otherwise hold the step (until the transaction ends) and return what is recorded."""
        ...

    async def settle(self, saga_id: uuid.UUID, step: str, state: str, result: Result) -> None:
        """Record the step's final ``state`` and the reply it gave."""
        ...


class SqlStepGuard:
    """The ``saga_step_guard`` table, inside the unit of work's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, saga_id: uuid.UUID, step: str, state: str) -> tuple[str | None, Result | None]:
        params = {"saga_id": saga_id, "step": step}
        if (await self.session.execute(_INSERT, params | {"state": state})).first() is not None:
            return None, None
        row = (await self.session.execute(_LOCK, params)).one()
        return row.state, row.result

    async def settle(self, saga_id: uuid.UUID, step: str, state: str, result: Result) -> None:
        await self.session.execute(_SET, {"saga_id": saga_id, "step": step, "state": state, "result": json.dumps(result)})


class FakeStepGuard:
    """In memory, for tests; one instance stands for one service's table."""

    def __init__(self) -> None:
        self.rows: dict[tuple[uuid.UUID, str], tuple[str, Result | None]] = {}

    async def claim(self, saga_id: uuid.UUID, step: str, state: str) -> tuple[str | None, Result | None]:
        if (saga_id, step) not in self.rows:
            self.rows[saga_id, step] = (state, None)
            return None, None
        return self.rows[saga_id, step]

    async def settle(self, saga_id: uuid.UUID, step: str, state: str, result: Result) -> None:
        self.rows[saga_id, step] = (state, json.loads(json.dumps(result)))
