"""Unit of work: one local transaction holding state changes and outgoing messages."""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from typing import Any, Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import outbox, tracing
from .envelope import Envelope, MalformedMessage, Message
from .guard import SqlStepGuard, StepGuard


class UnitOfWork:
    """A database transaction that can also send messages.

    Messages are written to the outbox in the same transaction as the state change, so
    either both happen or neither does. Leaving the ``async with`` block without calling
    :meth:`commit` rolls everything back.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], sender: str) -> None:
        self._sessions = sessions
        self.sender = sender
        self.session: AsyncSession

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        await self.session.begin()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.session.rollback()
        await self.session.close()

    @property
    def guard(self) -> StepGuard:
        """The participant's record of what it did about each saga step, in this transaction."""
        return SqlStepGuard(self.session)

    def savepoint(self) -> AbstractAsyncContextManager[Any]:
        """A nested transaction: leaving it by an exception undoes what was done inside only."""
        return self.session.begin_nested()

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
        """Stage ``message`` for ``to`` (``queue:<name>`` or ``topic:<name>``)."""
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
        with tracing.staging(to, envelope.message_type, str(envelope.message_id)) as trace:
            await outbox.add(self.session, envelope, to, trace)
        return envelope

    async def reply(self, request: Envelope, message: Message) -> Envelope:
        """Stage a reply to ``request`` on the queue it named in ``reply_to``; it carries the
        request's step and attempt, so a reply to any resend of one attempt counts for it."""
        if not request.reply_to:
            raise MalformedMessage(f"{request.message_type} {request.message_id} has no reply_to")
        return await self.send(
            message, f"queue:{request.reply_to}", causation=request, step=request.step, attempt=request.attempt
        )

    async def commit(self) -> None:
        # The commit itself wakes this process's relays (outbox's after_commit hook).
        await self.session.commit()
