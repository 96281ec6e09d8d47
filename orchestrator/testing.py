"""Given/expect testing of a saga definition: no broker, no database, a clock you move.

    saga = SagaScenario(order_saga(), data)                 # given a started saga
    saga.reply(InventoryReserved(order_id=...)).expect(ProcessPayment)
    saga.reply(PaymentFailed(order_id=..., reason="declined")).expect(ReleaseInventory)
    saga.tick(seconds=5)                                    # let deadlines pass
    assert saga.status == SagaStatus.COMPENSATING

Every input goes through the same pure engine the orchestrator runs. What a transition sends
is the engine's actions (:class:`Send`, :class:`Escalate`, :class:`Settle`), matched in
``expect`` by the message type a Send carries or by the action's class; or, given ``stage``
(the orchestrator's ``handlers.staged``), the messages the orchestrator would stage for them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from messaging.envelope import Message

from .engine import HistoryEntry, Outgoing, SagaDefinition, SagaEngine, SagaState, SagaStatus, StepStatus, Transition

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class Genuine:
    """What a genuine reply would carry (:meth:`SagaScenario.reply`'s default)."""


GENUINE = Genuine()


class SagaScenario:
    """A saga under test: feed it replies and time, read what it sent and where it stands."""

    def __init__(
        self,
        definition: SagaDefinition,
        data: dict[str, Any],
        *,
        now: datetime = EPOCH,
        stage: Callable[[SagaState, Outgoing], Any] | None = None,
    ) -> None:
        self.engine = SagaEngine(definition)
        self.now = now
        self.stage = stage
        self.sent: list[Any] = []
        """Everything sent so far: actions, or with ``stage`` the staged messages."""
        self.latest: list[Any] = []
        """What the last input sent."""
        self.history: list[HistoryEntry] = []
        self.last: Transition = self._apply(self.engine.start(uuid.uuid4(), data, now))

    # ---- inputs
    def reply(
        self,
        message: Message,
        *,
        after: timedelta = timedelta(milliseconds=100),
        causation_id: uuid.UUID | None | Genuine = GENUINE,
        participant: str | None | Genuine = GENUINE,
    ) -> Self:
        """The participant's reply to the latest command of its step; ``causation_id`` or
        ``participant`` given to play one that answers something else, or comes from elsewhere."""
        self.now += after
        causation, sender = self.engine.genuine_origin(self.state, type(message))
        self._apply(
            self.engine.on_reply(
                self.state,
                message,
                self.now,
                causation_id=causation if isinstance(causation_id, Genuine) else causation_id,
                participant=sender if isinstance(participant, Genuine) else participant,
            )
        )
        return self

    def tick(self, seconds: float) -> Self:
        self.now += timedelta(seconds=seconds)
        self._apply(self.engine.on_deadline(self.state, self.now))
        return self

    def until_deadline(self, step: str) -> Self:
        """Move the clock to ``step``'s deadline and fire it."""
        deadline = self.state.step(step).deadline
        assert deadline is not None, f"{step} has no deadline"
        return self.tick((deadline - self.now).total_seconds())

    def retry_compensation(self, step: str, actor: str = "test") -> Self:
        self._apply(self.engine.retry_compensation(self.state, step, self.now, actor))
        return self

    def resolve(self, reason: str, actor: str = "test") -> Self:
        self._apply(self.engine.resolve(self.state, reason, self.now, actor))
        return self

    def settled(self, step: str, *, already_compensated: bool = False) -> Self:
        """The participant's answer to the settlement of ``step``."""
        self._apply(self.engine.on_settled(self.state, step, already_compensated, self.now))
        return self

    # ---- expectations
    def expect(self, *kinds: type) -> Self:
        """Assert that the last input sent exactly these, in this order: message types, or
        action classes for what carries no message."""
        sent = [_kind(o) for o in self.latest]
        assert sent == list(kinds), f"expected {[k.__name__ for k in kinds]}, sent {[k.__name__ for k in sent]}"
        return self

    @property
    def state(self) -> SagaState:
        return self.last.state

    @property
    def status(self) -> SagaStatus:
        return self.state.status

    def step(self, name: str) -> StepStatus:
        return self.state.step(name).status

    def last_sent(self) -> type:
        return _kind(self.sent[-1])

    def _apply(self, transition: Transition) -> Transition:
        self.last = transition
        stage = self.stage
        self.latest = [stage(transition.state, o) if stage else o for o in transition.outgoing]
        self.sent += self.latest
        self.history += transition.history
        return transition


def _kind(sent: Any) -> type:
    message = getattr(sent, "message", None)
    return type(message) if isinstance(message, Message) else type(sent)
