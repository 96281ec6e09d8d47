"""Given/expect testing of a saga definition: no broker, no database, a clock you move.

    saga = SagaScenario(order_saga(), data)                 # given a started saga
    saga.reply(InventoryReserved(order_id=...)).expect(ProcessPayment)
    saga.reply(PaymentFailed(order_id=..., reason="declined")).expect(ReleaseInventory)
    saga.tick(seconds=5)                                    # let deadlines pass
    assert saga.status == SagaStatus.COMPENSATING

Every input goes through the same pure engine the orchestrator runs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from messaging.envelope import Message

from .engine import HistoryEntry, Outgoing, SagaDefinition, SagaEngine, SagaState, SagaStatus, StepStatus, Transition

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class SagaScenario:
    """A saga under test: feed it replies and time, read what it sent and where it stands."""

    def __init__(self, definition: SagaDefinition, data: dict[str, Any], *, now: datetime = EPOCH) -> None:
        self.engine = SagaEngine(definition)
        self.now = now
        self.sent: list[Outgoing] = []
        self.history: list[HistoryEntry] = []
        self.last: Transition = self._apply(self.engine.start(uuid.uuid4(), data, now))

    # ---- inputs
    def reply(self, message: Message, *, after: timedelta = timedelta(milliseconds=100)) -> Self:
        self.now += after
        self._apply(self.engine.on_reply(self.state, message, self.now))
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

    # ---- expectations
    def expect(self, *message_types: type[Message]) -> Self:
        """Assert that the last input sent exactly these messages, in this order."""
        sent = [type(o.message) for o in self.last.outgoing]
        assert sent == list(message_types), f"expected {[t.__name__ for t in message_types]}, sent {[t.__name__ for t in sent]}"
        return self

    @property
    def state(self) -> SagaState:
        return self.last.state

    @property
    def status(self) -> SagaStatus:
        return self.state.status

    def step(self, name: str) -> StepStatus:
        return self.state.step(name).status

    def last_sent(self) -> type[Message]:
        return type(self.sent[-1].message)

    def _apply(self, transition: Transition) -> Transition:
        self.last = transition
        self.sent += transition.outgoing
        self.history += transition.history
        return transition
