"""Dispatching received messages to handlers, exactly once per message id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import inbox, metrics, tracing
from .crash import fault_point
from .envelope import Envelope, MalformedMessage, Message, MessageRegistry
from .received import Outcome, Received, Skipped
from .trust import ANYONE, ForgedMessage, Trust
from .uow import UnitOfWork

log = structlog.get_logger("bus")

# Any: each handler takes the message type it is registered for.
Handler = Callable[[UnitOfWork, Envelope, Any], Awaitable[None]]
Handlers = Mapping[type[Message], Handler]


class MessageBus:
    """Parses messages, claims them in the inbox and runs their handlers, in one transaction
    per receive.

    The handler stages its state changes and replies in the unit of work; the bus commits.
    A message whose id this consumer already handled is acknowledged without effect.

    :meth:`handle_batch` handles the messages one receive brought in a single transaction,
    each inside a savepoint of its own: a message whose handler fails is rolled back alone
    (and retried later by the consumer, alone or in another receive) while the others commit
    together, one commit for the receive instead of one per message. If that commit fails,
    none of them counts as handled and all are retried.
    """

    def __init__(
        self,
        *,
        consumer: str,
        sender: str,
        sessions: async_sessionmaker[AsyncSession],
        handlers: Handlers,
        registry: MessageRegistry | None = None,
        trust: Trust = ANYONE,
    ) -> None:
        self._consumer = consumer
        self._trust = trust
        self._sender = sender
        self._sessions = sessions
        self._handlers = dict(handlers)
        # By default the bus reads the types it has handlers for; any other is malformed here.
        self._registry = registry or MessageRegistry(*handlers)

    async def handle(self, body: str, receive_count: int = 1) -> None:
        """Handle one message in a transaction of its own; raises what kept it from being handled."""
        [outcome] = await self.handle_batch([Received(body, receive_count)])
        if outcome is not None:
            raise outcome

    async def handle_batch(self, received: Sequence[Received]) -> list[Outcome]:
        """Handle ``received`` in one transaction; one outcome per message (None: handled)."""
        outcomes: list[Outcome] = [None] * len(received)
        failed_groups: set[str] = set()
        done: list[tuple[int, Envelope, dict[str, Any], str, Any]] = []
        async with UnitOfWork(self._sessions, self._sender) as uow:
            for position, message in enumerate(received):
                if message.group is not None and message.group in failed_groups:
                    outcomes[position] = Skipped()
                    continue
                try:
                    envelope, parsed = self._parse(message.body)
                    context = _context(envelope, parsed)
                    if refusal := self._refusal(message, envelope):
                        # Taken off the queue, not released: released, it would hold its FIFO
                        # group (and the genuine messages behind it) until it is dead-lettered.
                        log.warning("message_refused", reason=refusal, claimed_sender=envelope.sender, **context)
                        metrics.refused(self._sender, "sender")
                        continue
                    span = tracing.processing(
                        message.queue or self._consumer,
                        message.trace,
                        message_type=envelope.message_type,
                        message_id=str(envelope.message_id),
                    )
                    with span as current, structlog.contextvars.bound_contextvars(**context):
                        async with uow.savepoint():
                            outcome = await self._run(uow, envelope, parsed)
                except Exception as error:  # noqa: BLE001 - undone alone; the consumer retries or dead-letters it
                    outcomes[position] = error
                    if message.group is not None:
                        failed_groups.add(message.group)
                    continue
                done.append((position, envelope, context, outcome, current))
            if done:
                try:
                    await uow.commit()
                except Exception as error:  # noqa: BLE001 - nothing of this receive was handled
                    for position, *_ in done:
                        outcomes[position] = error
                    return outcomes
        for position, envelope, context, outcome, span in done:
            event = "message_duplicate_ignored" if outcome == "duplicate" else "message_handled"
            with tracing.resumed(span):
                log.info(event, receive_count=received[position].receive_count, **context)
            metrics.MESSAGES_HANDLED.labels(self._sender, envelope.message_type, outcome).inc()
        return outcomes

    def _refusal(self, message: Received, envelope: Envelope) -> str | None:
        try:
            self._trust.check(message.queue, envelope, message.sender_id)
        except ForgedMessage as forged:
            return str(forged)
        return None

    def _parse(self, body: str) -> tuple[Envelope, Message]:
        envelope, message = self._registry.parse(body)
        if type(message) not in self._handlers:
            raise MalformedMessage(f"{self._consumer} does not handle {envelope.message_type}")
        return envelope, message

    async def _run(self, uow: UnitOfWork, envelope: Envelope, message: Message) -> str:
        if not await inbox.claim(uow.session, self._consumer, envelope.message_id, envelope.message_type):
            return "duplicate"
        fault_point(envelope.message_type, str(envelope.message_id))
        await self._handlers[type(message)](uow, envelope, message)
        return "handled"


def _context(envelope: Envelope, message: Message) -> dict[str, Any]:
    """What every log line written while handling the message carries."""
    return {
        "saga_id": str(envelope.saga_id) if envelope.saga_id else None,
        "message_id": str(envelope.message_id),
        "message_type": envelope.message_type,
        **{name: str(getattr(message, name)) for name in message.log_context},
    }
