"""A unit of work with no database, for tests of handlers that touch nothing but the step
guard and the messages they send: they run in milliseconds.

The guard behaves as the real one does; ``tests/integration/test_step_guard_contract.py``
runs one behaviour suite against both.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Self

from .envelope import Envelope, Message
from .guard import FakeStepGuard, StepGuard
from .uow import UnitOfWork


@dataclass(frozen=True)
class Sent:
    envelope: Envelope
    to: str

    @property
    def message_type(self) -> str:
        return self.envelope.message_type


class FakeUnitOfWork(UnitOfWork):
    """Records what would be staged in the outbox; ``commit`` keeps it, leaving without one drops it."""

    def __init__(self, sender: str = "test", guard: FakeStepGuard | None = None) -> None:
        self.sender = sender
        self._guard = guard or FakeStepGuard()
        self.sent: list[Sent] = []
        self._pending: list[Sent] = []
        self.committed = False

    async def __aenter__(self) -> Self:
        self._pending = []
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._pending = []

    @property
    def guard(self) -> StepGuard:
        return self._guard

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        yield

    async def send(
        self,
        message: Message,
        to: str,
        *,
        saga_id: uuid.UUID | None = None,
        correlation_id: uuid.UUID | None = None,
        causation: Envelope | None = None,
        reply_to: str | None = None,
        message_id: uuid.UUID | None = None,
        step: str | None = None,
        attempt: int | None = None,
    ) -> Envelope:
        envelope = Envelope.wrap(
            message,
            sender=self.sender,
            saga_id=saga_id,
            correlation_id=correlation_id,
            causation=causation,
            reply_to=reply_to,
            message_id=message_id,
            step=step,
            attempt=attempt,
        )
        self._pending.append(Sent(envelope, to))
        return envelope

    async def commit(self) -> None:
        self.sent += self._pending
        self._pending = []
        self.committed = True
