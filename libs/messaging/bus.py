"""Dispatching received messages to handlers, exactly once per message id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import inbox, metrics
from .envelope import Envelope, MalformedMessage, Message, MessageRegistry
from .uow import UnitOfWork

log = structlog.get_logger("bus")

# Any: each handler takes the message type it is registered for.
Handler = Callable[[UnitOfWork, Envelope, Any], Awaitable[None]]
Handlers = Mapping[type[Message], Handler]


class MessageBus:
    """Parses a message, claims it in the inbox and runs its handler, all in one transaction.

    The handler stages its state changes and replies in the unit of work; the bus commits.
    A message whose id this consumer already handled is acknowledged without effect.
    """

    def __init__(
        self,
        *,
        consumer: str,
        sender: str,
        sessions: async_sessionmaker[AsyncSession],
        handlers: Handlers,
        registry: MessageRegistry | None = None,
    ) -> None:
        self._consumer = consumer
        self._sender = sender
        self._sessions = sessions
        self._handlers = dict(handlers)
        # By default the bus reads the types it has handlers for; any other is malformed here.
        self._registry = registry or MessageRegistry(*handlers)

    async def handle(self, body: str, receive_count: int = 1) -> None:
        envelope, message = self._registry.parse(body)
        handler = self._handlers.get(type(message))
        if handler is None:
            raise MalformedMessage(f"{self._consumer} does not handle {envelope.message_type}")
        with structlog.contextvars.bound_contextvars(
            saga_id=str(envelope.saga_id) if envelope.saga_id else None,
            message_id=str(envelope.message_id),
            message_type=envelope.message_type,
            **{name: str(getattr(message, name)) for name in message.log_context},
        ):
            async with UnitOfWork(self._sessions, self._sender) as uow:
                if not await inbox.claim(uow.session, self._consumer, envelope.message_id, envelope.message_type):
                    log.info("message_duplicate_ignored", receive_count=receive_count)
                    metrics.MESSAGES_HANDLED.labels(self._sender, envelope.message_type, "duplicate").inc()
                    return
                await handler(uow, envelope, message)
                await uow.commit()
            log.info("message_handled", receive_count=receive_count)
            metrics.MESSAGES_HANDLED.labels(self._sender, envelope.message_type, "handled").inc()
