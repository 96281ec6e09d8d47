"""The engine as a state machine under an unreliable network and restarts (Hypothesis).

Commands go to participants modelled on the step guard (one effect per saga and step, a
compensation leaves a tombstone); their replies travel a network that duplicates, reorders,
drops and later redelivers them; the clock moves and fires deadlines (resends, timeouts,
compensation retries); the orchestrator restarts, its state going through the same JSON
the repository stores. Whatever happens, once everything is delivered the saga has ended
consistently: completed with every effect in place, or compensated with none left.

And over every interleaving: a saga that reached ``completed`` or ``compensated`` never moves
again; ``compensated`` never shows while a compensation is unacknowledged; and a saga leaves
``needs_intervention`` only by an operator's recorded action (the ``operator`` rule).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from contracts import messages as c
from orchestrator import engine as e
from orchestrator.order_saga import order_saga
from orchestrator.repository import _sent, _step_from_json, _step_to_json

ENGINE = e.SagaEngine(order_saga())
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FORWARD = {
    c.ReserveInventory: (
        "reserve_inventory",
        lambda o: c.InventoryReserved(order_id=o),
        lambda o: c.InventoryReservationFailed(order_id=o, reason="no stock"),
    ),
    c.ProcessPayment: (
        "process_payment",
        lambda o: c.PaymentProcessed(order_id=o, payment_id=uuid.uuid4()),
        lambda o: c.PaymentFailed(order_id=o, reason="declined"),
    ),
    c.FulfillOrder: (
        "fulfill_order",
        lambda o: c.OrderFulfilled(order_id=o, shipment_id=uuid.uuid4()),
        lambda o: c.FulfillmentFailed(order_id=o, reason="undeliverable"),
    ),
    c.SendConfirmation: (
        "send_confirmation",
        lambda o: c.ConfirmationSent(order_id=o),
        lambda o: c.ConfirmationFailed(order_id=o, reason="bounced"),
    ),
}
UNDO = {
    c.CancelOrder: ("create_order", lambda o: c.OrderCancelled(order_id=o)),
    c.ReleaseInventory: ("reserve_inventory", lambda o: c.InventoryReleased(order_id=o)),
    c.RefundPayment: ("process_payment", lambda o: c.PaymentRefunded(order_id=o, amount=Decimal("0"))),
    c.CancelShipment: ("fulfill_order", lambda o: c.ShipmentCancelled(order_id=o)),
    c.WithdrawConfirmation: ("send_confirmation", lambda o: c.ConfirmationWithdrawn(order_id=o)),
}


class Participants:
    """Every participant's step guard: applied, refused or compensated, once per step."""

    def __init__(self, refusing: str | None) -> None:
        self.refusing = refusing
        self.guard: dict[str, str] = {}
        self.order_cancelled = False

    def handle(self, out: e.Outgoing, order_id: uuid.UUID):
        if not isinstance(out, e.Send):
            return None  # escalations: for people
        message = out.message
        if type(message) in FORWARD:
            step, ok, fail = FORWARD[type(message)]
            state = self.guard.setdefault(step, "refused" if step == self.refusing else "applied")
            if state == "compensated":
                return fail(order_id)  # compensated before it was applied
            return ok(order_id) if state == "applied" else fail(order_id)
        if type(message) in UNDO:
            step, done = UNDO[type(message)]
            if step == "create_order":
                self.order_cancelled = True
            self.guard[step] = "compensated"
            return done(order_id)
        return None  # ConfirmOrder: no reply


class SagaUnderFaults(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.order_id = uuid.uuid4()
        self.now = T0
        self.participants: Participants | None = None
        self.state: e.SagaState | None = None
        # (message, the command it answers) for replies, (None, command) for commands
        self.in_flight: list[tuple[c.Message | None, e.Outgoing]] = []
        self.dropped: list[tuple[c.Message | None, e.Outgoing]] = []
        self.completed_once = False
        self.final: e.SagaStatus | None = None
        """The final status the saga reached, if it did: it must never change."""

    # ---- inputs
    @precondition(lambda self: self.state is None)
    @rule(refusing=st.sampled_from([None, None, "reserve_inventory", "process_payment", "fulfill_order", "send_confirmation"]))
    def start(self, refusing):
        self.participants = Participants(refusing)
        data = {
            "order_id": str(self.order_id),
            "customer_id": "c",
            "customer_email": "a@example.com",
            "currency": "USD",
            "total": "10.00",
            "payment_token": "tok_visa",
            "items": [{"sku": "S", "quantity": 1, "unit_price": "10.00"}],
            "shipping_address": {"name": "A", "line1": "1", "city": "C", "postal_code": "1", "country": "US"},
        }
        self._apply(ENGINE.start(uuid.uuid4(), data, self.now))

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(min_value=0), keep_copy=st.booleans())
    def deliver(self, pick, keep_copy):
        """Any message in flight arrives, in any order; it may arrive again later."""
        message = self.in_flight[pick % len(self.in_flight)]
        if not keep_copy:
            self.in_flight.remove(message)
        self._arrive(*message)

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(min_value=0))
    def drop(self, pick):
        """A message is lost for now (a crashed consumer, a visibility timeout)."""
        self.dropped.append(self.in_flight.pop(pick % len(self.in_flight)))

    @precondition(lambda self: self.dropped)
    @rule()
    def redeliver(self):
        self.in_flight.extend(self.dropped)
        self.dropped.clear()

    @precondition(lambda self: self.state is not None)
    @rule(seconds=st.sampled_from([0.5, 2, 3, 5, 10, 30, 120]))
    def tick(self, seconds):
        self.now += timedelta(seconds=seconds)
        self._apply(ENGINE.on_deadline(self.state, self.now))

    @precondition(lambda self: self.state is not None)
    @rule()
    def restart(self):
        """The orchestrator restarts: its state comes back from what the repository stores."""
        sent = json.loads(json.dumps(_sent(self.state.steps)))
        steps = [_step_from_json(json.loads(json.dumps(_step_to_json(s))), sent.get(s.name)) for s in self.state.steps]
        self.state = e.SagaState(
            self.state.saga_id,
            self.state.definition,
            self.state.subject,
            self.state.status,
            dict(self.state.data),
            steps,
            self.state.created_at,
            self.state.updated_at,
            self.state.failed_step,
            self.state.failure_reason,
        )

    @precondition(lambda self: self.state is not None and self.state.status == e.SagaStatus.NEEDS_INTERVENTION)
    @rule(resolve=st.booleans())
    def operator(self, resolve):
        """A person acts on a saga handed to them: retries its failed compensation (or escalated
        step), or resolves it. Resolving means they put things right by hand."""
        failed = [s.name for s in self.state.steps if s.status in (e.StepStatus.COMPENSATION_FAILED, e.StepStatus.ESCALATED)]
        if resolve or not failed:
            self.resolved = True
            self._apply(ENGINE.resolve(self.state, "fixed by hand", self.now, "ops"), by_operator=True)
        else:
            self._apply(ENGINE.retry_compensation(self.state, failed[0], self.now, "ops"), by_operator=True)

    resolved = False

    def _arrive(self, reply: c.Message | None, cause: e.Outgoing) -> None:
        self.now += timedelta(milliseconds=100)
        if reply is None:  # a command reaches its participant
            answer = self.participants.handle(cause, self.order_id)
            if answer is not None:
                self.in_flight.append((answer, cause))
        else:
            self._apply(
                ENGINE.on_reply(
                    self.state,
                    reply,
                    self.now,
                    causation_id=cause.message_id,
                    participant=cause.participant,
                    attempt=cause.attempt,
                )
            )

    def _apply(self, t: e.Transition, *, by_operator: bool = False) -> None:
        before = self.state.status if self.state is not None else None
        after = t.state.status
        if before == e.SagaStatus.NEEDS_INTERVENTION and after != before:
            assert by_operator, f"left needs_intervention for {after} by a message or a deadline"
        if self.final is not None:
            assert after == self.final, f"a {self.final} saga moved to {after}"
        if after in (e.SagaStatus.COMPLETED, e.SagaStatus.COMPENSATED):
            self.final = after
        self.state = t.state
        self.in_flight += [(None, out) for out in t.outgoing]

    # ---- what always holds
    @invariant()
    def consistent(self):
        if self.state is None:
            return
        statuses = {s.name: s.status for s in self.state.steps}
        if self.state.status == e.SagaStatus.COMPLETED:
            self.completed_once = True
            assert set(statuses.values()) == {e.StepStatus.SUCCEEDED}
            assert not self.participants.order_cancelled
        assert not (self.completed_once and self.state.status != e.SagaStatus.COMPLETED), "a completed saga never turns back"
        if self.state.status == e.SagaStatus.COMPENSATED:
            assert not any(
                s in (e.StepStatus.COMPENSATING, e.StepStatus.RUNNING, e.StepStatus.COMPENSATION_FAILED)
                for s in statuses.values()
            ), f"compensated while {statuses}"
            assert self.state.next_deadline is None
        if self.state.status == e.SagaStatus.RUNNING:
            assert not any(
                s in (e.StepStatus.COMPENSATING, e.StepStatus.COMPENSATED, e.StepStatus.COMPENSATION_FAILED)
                for s in statuses.values()
            )

    def teardown(self):
        """Everything is delivered in the end: the saga ends, and the books match its end."""
        if self.state is None:
            return
        self.in_flight += self.dropped
        for _ in range(500):
            if self.in_flight:
                self._arrive(*self.in_flight.pop(0))
            elif self.state.next_deadline is not None:
                self.now = max(self.now, self.state.next_deadline)
                self._apply(ENGINE.on_deadline(self.state, self.now))
            elif self.state.status == e.SagaStatus.NEEDS_INTERVENTION and not self.resolved:
                self.operator(resolve=False)  # the person retries what failed, now the network delivers
            else:
                break
        assert self.state.status in (e.SagaStatus.COMPLETED, e.SagaStatus.COMPENSATED), self.state.status
        applied = {step for step, state in self.participants.guard.items() if state == "applied"}
        if self.state.status == e.SagaStatus.COMPLETED:
            assert applied == {"reserve_inventory", "process_payment", "fulfill_order", "send_confirmation"}
        elif not self.resolved:  # a resolve means a person undid by hand what is still applied here
            assert applied == set() and self.participants.order_cancelled


TestSagaUnderFaults = SagaUnderFaults.TestCase
TestSagaUnderFaults.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
