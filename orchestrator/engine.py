"""The saga engine: pure functions from (saga state, input) to (new state, messages to send).

No I/O happens here. Persistence and messaging wrap the engine (see ``handlers.py``), so
every transition can be tested by giving a state and a reply and checking the commands.

States (see docs/design.md for the diagram):

* saga: ``running`` -> ``completed``; ``running`` -> ``compensating`` -> ``compensated`` or
  ``needs_intervention``.
* step: ``pending`` -> ``running`` -> ``succeeded`` | ``failed`` | ``timed_out``;
  ``succeeded``/``timed_out`` -> ``compensating`` -> ``compensated`` | ``compensation_failed``.

A reply is accepted only by a step in the status that expects it (``running`` for a forward
reply, ``compensating`` for a compensation reply, or ``compensation_failed`` for a late
compensation success). Anything else (a duplicate, a reply that arrives after a timeout, a
reply for another saga's step) changes nothing but the history.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from messaging.contracts import (
    CompensationEscalated,
    FailureReply,
    Reply,
    SagaStartFailed,
    SettlementConflict,
    SettleStep,
)
from messaging.envelope import Message
from messaging.topology import SAGA_ESCALATIONS

# Saga statuses
RUNNING, COMPENSATING, COMPLETED, COMPENSATED, NEEDS_INTERVENTION = (
    "running", "compensating", "completed", "compensated", "needs_intervention",
)
FINAL_STATUSES = (COMPLETED, COMPENSATED, NEEDS_INTERVENTION)
# Step statuses
PENDING, STEP_RUNNING, SUCCEEDED, FAILED, TIMED_OUT = "pending", "running", "succeeded", "failed", "timed_out"
STEP_COMPENSATING, STEP_COMPENSATED, COMPENSATION_FAILED = "compensating", "compensated", "compensation_failed"


MAX_RESEND_INTERVAL = timedelta(seconds=5)
MAX_SENDS = 3
"""Copies of a step's command at most (the first and two resends). A crashed participant
needs one resend after it died; more would only add load when replies are late because
every queue is backed up, which is when load hurts most."""

# --------------------------------------------------------------------------- definition
@dataclass(frozen=True)
class Invoke:
    """Send ``build(saga data)`` to ``participant``'s queue and wait for one of the replies."""

    command: type[Message]
    build: Callable[[dict[str, Any]], Message]
    success: type[Reply]
    failure: type[FailureReply] | None = None


@dataclass(frozen=True)
class Step:
    name: str
    participant: str
    """Logical name of the participant's command queue."""
    action: Invoke | None
    """None when the step is done by whoever starts the saga, in the same transaction."""
    compensation: Invoke | None = None
    timeout: timedelta = timedelta(seconds=10)
    """The least time the step is given before it has timed out; it may get more from the
    saga's budget (:attr:`SagaDefinition.budget`)."""
    resend_after: timedelta | None = None
    """Silence after which the command is sent again, doubling after each resend up to
    :data:`MAX_RESEND_INTERVAL`, as long as the budget lasts. A participant that restarts finds
    a resend at once, while the copy it had taken stays invisible for its queue's visibility
    timeout. None: never resent."""
    forget: tuple[str, ...] = ()
    """Saga data only this step's command needs, erased once the step has been answered."""


@dataclass(frozen=True)
class Notify:
    """A command sent when the saga ends, with no reply expected."""

    participant: str
    build: Callable[[dict[str, Any]], Message]


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: tuple[Step, ...]
    on_completed: tuple[Notify, ...] = ()
    max_compensation_attempts: int = 5
    """Compensation sends (first try plus retries on timeout) before escalating."""
    budget: timedelta | None = None
    """Time from the start within which the saga should end. A step may use what the steps
    before it left, minus the least time (``timeout``) of each step after it; so a participant
    that restarts within the budget still finishes its step, and the saga its run."""

    def __post_init__(self) -> None:
        seen: dict[type, str] = {}
        for step in self.steps:
            for invoke in (step.action, step.compensation):
                for reply in (invoke.success, invoke.failure) if invoke else ():
                    if reply is not None and seen.setdefault(reply, step.name) != step.name:
                        raise ValueError(f"{reply.__name__} answers both {seen[reply]} and {step.name}")

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


# --------------------------------------------------------------------------- state
@dataclass
class StepState:
    name: str
    status: str = PENDING
    attempts: int = 0
    """Attempts of the action: a saga runs each step once, so 1 once started. Resends share it."""
    sends: int = 0
    """Copies of the action's command sent in this attempt (the first plus resends)."""
    compensation_attempts: int = 0
    """Sends of the compensation since it was last started; paces its backoff and escalation."""
    compensation_round: int = 0
    """Attempt of the compensation: 1 when first started, +1 per operator retry. Resends share it."""
    escalation_ids: list[str] = field(default_factory=list)
    """Message ids of the CompensationEscalated raised for this step, so the operator's tools
    find them in the escalation queue by id rather than by comparing clocks."""
    compensation_command_id: str | None = None
    """Message id of the latest compensation sent, to tell its refusal from a stale one."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline: datetime | None = None
    error: str | None = None


@dataclass
class SagaState:
    saga_id: uuid.UUID
    definition: str
    status: str
    data: dict[str, Any]
    steps: list[StepState]
    created_at: datetime
    updated_at: datetime
    failed_step: str | None = None
    failure_reason: str | None = None

    def step(self, name: str) -> StepState:
        return next(s for s in self.steps if s.name == name)

    @property
    def next_deadline(self) -> datetime | None:
        deadlines = [s.deadline for s in self.steps if s.deadline is not None]
        return min(deadlines) if deadlines else None


@dataclass(frozen=True)
class Outgoing:
    """A message the engine wants sent, from the outbox, in the same transaction."""

    step: str | None
    message: Message
    destination: str
    expects_reply: bool
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)
    """The envelope's id: replies name it as their causation."""
    attempt: int | None = None
    """With the saga and the step, the command's identity: every resend of an attempt shares it."""


@dataclass(frozen=True)
class HistoryEntry:
    event: str
    step: str | None = None
    detail: str | None = None


@dataclass
class Transition:
    state: SagaState
    outgoing: list[Outgoing] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.outgoing) or any(h.event != "reply_ignored" for h in self.history)


# --------------------------------------------------------------------------- engine
class SagaEngine:
    """Runs one :class:`SagaDefinition`. Every method returns a new state; inputs are not mutated."""

    def __init__(self, definition: SagaDefinition) -> None:
        self.definition = definition
        self._replies: dict[type, tuple[int, str, bool]] = {}
        for index, step in enumerate(definition.steps):
            for phase, invoke in (("action", step.action), ("compensation", step.compensation)):
                if invoke:
                    self._replies[invoke.success] = (index, phase, True)
                    if invoke.failure:
                        self._replies[invoke.failure] = (index, phase, False)

    def step_of_message_types(self) -> dict[str, str]:
        """Which step each command and reply type belongs to, for people reading dead letters."""
        steps = {}
        for step in self.definition.steps:
            for invoke in (step.action, step.compensation):
                for message in (invoke.command, invoke.success, invoke.failure) if invoke else ():
                    if message is not None:
                        steps[message.__name__] = step.name
        return steps

    def replies(self) -> frozenset[type]:
        """Every reply type this saga waits for."""
        return frozenset(self._replies)

    # ---- inputs
    def start(self, saga_id: uuid.UUID, data: dict[str, Any], now: datetime) -> Transition:
        state = SagaState(
            saga_id=saga_id, definition=self.definition.name, status=RUNNING, data=dict(data),
            steps=[StepState(s.name) for s in self.definition.steps], created_at=now, updated_at=now,
        )
        t = Transition(state, history=[HistoryEntry("saga_started")])
        for step, step_state in zip(self.definition.steps, state.steps, strict=True):
            if step.action is not None:
                break
            step_state.status, step_state.started_at, step_state.finished_at = SUCCEEDED, now, now
            t.history.append(HistoryEntry("step_succeeded", step.name, "done by the saga's initiator"))
        self._advance(t, now)
        return t

    def settle_unstarted(self, saga_id: uuid.UUID, order_id: str, reason: str, now: datetime) -> Transition:
        """The saga of ``order_id`` never started: record it as one that could not, undo what
        its initiator did (cancel the order) and escalate. Nothing else ever ran for it; a start
        that arrives later finds the saga and does nothing."""
        state = SagaState(
            saga_id=saga_id, definition=self.definition.name, status=RUNNING, data={"order_id": order_id},
            steps=[StepState(s.name) for s in self.definition.steps], created_at=now, updated_at=now,
        )
        t = Transition(state, history=[HistoryEntry("saga_start_failed", None, reason)])
        last_done = -1
        for index, (step, step_state) in enumerate(zip(self.definition.steps, state.steps, strict=True)):
            if step.action is not None:
                break
            step_state.status, step_state.started_at, step_state.finished_at = SUCCEEDED, now, now
            last_done = index
        self._begin_compensation(t, self.definition.steps[max(last_done, 0)].name, reason, last_done, now)
        t.outgoing.append(Outgoing(None, SagaStartFailed(order_id=order_id, saga_id=saga_id, reason=reason),
                                   f"queue:{SAGA_ESCALATIONS}", False))
        return t

    def on_reply(self, state: SagaState, reply: Message, now: datetime,
                 causation_id: uuid.UUID | None = None, attempt: int | None = None) -> Transition:
        """``causation_id`` is the id of the command the reply answers and ``attempt`` the attempt
        it served, where known."""
        t = Transition(_copy(state))
        if type(reply) not in self._replies:
            t.history.append(HistoryEntry("reply_ignored", None, f"{type(reply).__name__} is not part of this saga"))
            return t
        index, phase, ok = self._replies[type(reply)]
        step, step_state = self.definition.steps[index], t.state.steps[index]
        expected = (STEP_RUNNING,) if phase == "action" else (STEP_COMPENSATING,)
        if phase == "compensation" and ok:
            # An acknowledgement that comes after the step was escalated for lack of one
            # still means the effect is undone: the step is compensated after all.
            expected += (COMPENSATION_FAILED,)
        if step_state.status not in expected:
            t.history.append(HistoryEntry(
                "reply_ignored", step.name, f"{type(reply).__name__} while step is {step_state.status}"))
            return t
        if phase == "compensation" and not ok and _earlier_attempt(step_state, causation_id, attempt):
            # The refusal of an earlier attempt, overtaken by a retry: the retry's own answer counts.
            t.history.append(HistoryEntry("reply_ignored", step.name, f"{type(reply).__name__} to an earlier attempt"))
            return t
        reason = getattr(reply, "reason", None)
        step_state.deadline, step_state.finished_at = None, now
        if phase == "action":
            _forget(t.state, step)
        t.state.updated_at = now
        if phase == "action" and ok:
            step_state.status, step_state.error = SUCCEEDED, None
            t.history.append(HistoryEntry("step_succeeded", step.name))
            self._advance(t, now)
        elif phase == "action":
            step_state.status, step_state.error = FAILED, reason
            t.history.append(HistoryEntry("step_failed", step.name, reason))
            self._begin_compensation(t, step.name, reason, index - 1, now)
        elif ok:
            step_state.status, step_state.error = STEP_COMPENSATED, None
            t.history.append(HistoryEntry("step_compensated", step.name))
            self._compensate_from(t, index - 1, now)
        else:
            self._compensation_failed(t, index, reason or "compensation refused", now)
            self._compensate_from(t, index - 1, now)
        return t

    def on_deadline(self, state: SagaState, now: datetime, cutoff: datetime | None = None) -> Transition:
        """Handle every step whose deadline has passed.

        Sending a command again is always safe, so resends happen at ``now``. Judging silence
        is not: a step times out, and a compensation escalates, only for deadlines up to
        ``cutoff`` (default ``now``), i.e. while every reply that could answer them has been read.
        """
        t = Transition(_copy(state))
        cutoff = min(cutoff or now, now)
        for index, step_state in enumerate(t.state.steps):
            if step_state.deadline is None or step_state.deadline > now:
                continue
            step = self.definition.steps[index]
            # A running step has timed out only once its whole budget lies before the cutoff.
            silence_until = self._budget_end(t.state, index) if step_state.status == STEP_RUNNING else step_state.deadline
            judged = silence_until <= cutoff
            if step_state.status == STEP_RUNNING and now < self._budget_end(t.state, index):
                step_state.deadline, t.state.updated_at = None, now
                self._send_action(t, index, now, resend=True)
                continue
            resend_compensation = (step_state.status == STEP_COMPENSATING
                                   and step_state.compensation_attempts < self.definition.max_compensation_attempts)
            if not judged and not resend_compensation:
                continue  # silence not established yet: wait until the replies are read
            step_state.deadline = None
            t.state.updated_at = now
            if step_state.status == STEP_RUNNING:
                step_state.status, step_state.finished_at = TIMED_OUT, now
                _forget(t.state, step)
                waited = (self._budget_end(t.state, index) - step_state.started_at).total_seconds()
                step_state.error = f"no reply within {waited:.3g}s"
                t.history.append(HistoryEntry("step_timed_out", step.name, step_state.error))
                t.state.status, t.state.failed_step = COMPENSATING, step.name
                t.state.failure_reason = f"{step.name} timed out"
                self._forget_unrun(t.state)
                t.history.append(HistoryEntry("compensation_started", step.name, t.state.failure_reason))
                # The timed-out step is compensated too: its effect may have happened
                # without its reply reaching us. If it never ran, the participant records
                # the compensation as a no-op and refuses the late command. Its participant
                # may be down, so the earlier steps are undone meanwhile rather than after
                # its acknowledgement; it keeps its own deadline and retries, and escalates
                # if it is never acknowledged.
                if step.compensation is not None:
                    step_state.compensation_round += 1
                    self._send_compensation(t, index, now)
                self._compensate_from(t, index - 1, now)
            elif step_state.status == STEP_COMPENSATING:
                error = f"compensation not acknowledged within {self._compensation_timeout(step, step_state):g}s"
                t.history.append(HistoryEntry("compensation_timed_out", step.name, error))
                if step_state.compensation_attempts < self.definition.max_compensation_attempts:
                    step_state.error = error
                    self._send_compensation(t, index, now)
                else:
                    self._compensation_failed(t, index, error, now)
                    self._compensate_from(t, index - 1, now)
        return t

    def retry_compensation(self, state: SagaState, step_name: str, now: datetime, actor: str) -> Transition:
        """Operator action: send a failed compensation again."""
        t = Transition(_copy(state))
        index = self._index(step_name)
        if t.state.steps[index].status != COMPENSATION_FAILED:
            raise ValueError(f"step {step_name} is {t.state.steps[index].status}, not {COMPENSATION_FAILED}")
        t.state.status = COMPENSATING
        t.state.steps[index].compensation_attempts = 0
        t.state.steps[index].compensation_round += 1
        t.history.append(HistoryEntry("operator_retry_compensation", step_name, f"by {actor}"))
        self._send_compensation(t, index, now)
        return t

    def resolve(self, state: SagaState, reason: str, now: datetime, actor: str) -> Transition:
        """Operator action: a person fixed the effects by hand; close the saga."""
        t = Transition(_copy(state))
        if t.state.status not in (NEEDS_INTERVENTION, COMPENSATING):
            raise ValueError(f"saga is {t.state.status}; only {NEEDS_INTERVENTION} or {COMPENSATING} sagas"
                             " are resolved by hand")
        told: list[HistoryEntry] = []
        for step, step_state in zip(self.definition.steps, t.state.steps, strict=True):
            # A compensation still in flight is settled too, so that it cannot escalate
            # a saga that a person has already closed.
            if step_state.status in (COMPENSATION_FAILED, STEP_COMPENSATING):
                step_state.status = STEP_COMPENSATED
                step_state.deadline = None
                # The participant learns it too: a compensation still queued, or redriven
                # from a dead-letter queue later, must not undo the step a second time.
                t.outgoing.append(Outgoing(step.name, SettleStep(order_id=t.state.data["order_id"], reason=reason[:500]),
                                           f"queue:{step.participant}", True, attempt=max(step_state.compensation_round, 1)))
                told.append(HistoryEntry("settlement_sent", step.name, "the participant is told the step was settled"))
        t.state.status, t.state.updated_at = COMPENSATING, now
        t.history.append(HistoryEntry("operator_resolved", None, f"by {actor}: {reason}"))
        t.history += told
        # What the person settled is done; steps below it that are still applied are
        # undone as usual, and the saga is compensated once they are.
        self._compensate_from(t, len(t.state.steps) - 1, now)
        return t

    def on_settled(self, state: SagaState, step_name: str, already_compensated: bool, now: datetime) -> Transition:
        """A participant's answer to a settlement by hand. If its compensation had already run,
        the effect was undone twice: recorded and escalated so that a person undoes the manual action."""
        t = Transition(_copy(state))
        if not already_compensated:
            t.history.append(HistoryEntry("settlement_acknowledged", step_name))
            return t
        detail = ("its compensation had already run when the step was settled by hand: "
                  "undo the manual action")
        t.history.append(HistoryEntry("compensation_ran_before_settlement", step_name, detail))
        t.outgoing.append(Outgoing(step_name, SettlementConflict(
            order_id=t.state.data["order_id"], saga_id=t.state.saga_id, step=step_name, detail=detail),
            f"queue:{SAGA_ESCALATIONS}", False))
        return t

    # ---- transitions
    def _advance(self, t: Transition, now: datetime) -> None:
        for index, step_state in enumerate(t.state.steps):
            if step_state.status == PENDING:
                step_state.status, step_state.started_at = STEP_RUNNING, now
                step_state.attempts += 1
                self._send_action(t, index, now, resend=False)
                return
        t.state.status = COMPLETED
        t.history.append(HistoryEntry("saga_completed"))
        for notify in self.definition.on_completed:
            t.outgoing.append(Outgoing(None, notify.build(t.state.data), f"queue:{notify.participant}", False))

    def _send_action(self, t: Transition, index: int, now: datetime, *, resend: bool) -> None:
        """Send the step's command; the next deadline is the next resend or the end of its budget."""
        step, step_state = self.definition.steps[index], t.state.steps[index]
        step_state.sends += 1
        budget_end = self._budget_end(t.state, index)
        deadline = budget_end
        if step.resend_after is not None and step_state.sends < MAX_SENDS:
            deadline = min(budget_end, now + min(step.resend_after * 2 ** (step_state.sends - 1), MAX_RESEND_INTERVAL))
        step_state.deadline = deadline
        t.outgoing.append(Outgoing(step.name, step.action.build(t.state.data), f"queue:{step.participant}", True,
                                   attempt=step_state.attempts))
        if resend:
            t.history.append(HistoryEntry("step_resent", step.name, f"send {step_state.sends}, no reply yet"))
        else:
            t.history.append(HistoryEntry("step_started", step.name))

    def _budget_end(self, state: SagaState, index: int) -> datetime:
        """When a running step has timed out: after its own least time, or later if the saga's
        budget leaves room once every later step has its least time."""
        step, started = self.definition.steps[index], state.steps[index].started_at
        own = started + step.timeout
        if self.definition.budget is None:
            return own
        later = sum((s.timeout for s in self.definition.steps[index + 1:] if s.action is not None), timedelta())
        return max(own, state.created_at + self.definition.budget - later)

    def _begin_compensation(self, t: Transition, step: str, reason: str | None, start: int, now: datetime) -> None:
        t.state.status, t.state.failed_step, t.state.failure_reason = COMPENSATING, step, reason
        self._forget_unrun(t.state)
        t.history.append(HistoryEntry("compensation_started", step, reason))
        self._compensate_from(t, start, now)

    def _forget_unrun(self, state: SagaState) -> None:
        """Steps that will never run now need none of the data kept for them."""
        for step, step_state in zip(self.definition.steps, state.steps, strict=True):
            if step_state.status == PENDING:
                _forget(state, step)

    def _compensate_from(self, t: Transition, start: int, now: datetime) -> None:
        """Compensate the latest applied step at or before ``start``, or finish the saga."""
        for index in range(start, -1, -1):
            step, step_state = self.definition.steps[index], t.state.steps[index]
            if step_state.status in (STEP_COMPENSATING, STEP_RUNNING):
                return  # still waiting on it (an operator retry runs alongside)
            if step_state.status not in (SUCCEEDED, TIMED_OUT):
                continue
            if step.compensation is None:
                continue  # nothing to undo (documented per step)
            step_state.compensation_attempts = 0
            step_state.compensation_round += 1
            self._send_compensation(t, index, now)
            return
        failed = any(s.status == COMPENSATION_FAILED for s in t.state.steps)
        final = NEEDS_INTERVENTION if failed else COMPENSATED
        if t.state.status != final:
            t.state.status = final
            t.history.append(HistoryEntry("saga_" + final))

    def _send_compensation(self, t: Transition, index: int, now: datetime) -> None:
        step, step_state = self.definition.steps[index], t.state.steps[index]
        step_state.status = STEP_COMPENSATING
        step_state.compensation_attempts += 1
        step_state.finished_at = None
        step_state.deadline = now + timedelta(seconds=self._compensation_timeout(step, step_state))
        command = Outgoing(step.name, step.compensation.build(_context(t.state)), f"queue:{step.participant}", True,
                           attempt=max(step_state.compensation_round, 1))
        step_state.compensation_command_id = str(command.message_id)
        t.outgoing.append(command)
        t.history.append(HistoryEntry("compensation_sent", step.name, f"attempt {step_state.compensation_attempts}"))

    def _compensation_failed(self, t: Transition, index: int, error: str, now: datetime) -> None:
        step, step_state = self.definition.steps[index], t.state.steps[index]
        step_state.status, step_state.error, step_state.deadline, step_state.finished_at = (
            COMPENSATION_FAILED, error, None, now)
        t.history.append(HistoryEntry("compensation_failed", step.name, error))
        escalation = CompensationEscalated(
            order_id=t.state.data["order_id"], saga_id=t.state.saga_id, step=step.name,
            command={"type": step.compensation.command.__name__,
                     "payload": step.compensation.build(_context(t.state)).model_dump(mode="json")},
            last_error=error[:500], attempts=step_state.compensation_attempts,
        )
        out = Outgoing(step.name, escalation, f"queue:{SAGA_ESCALATIONS}", False)
        step_state.escalation_ids = [*step_state.escalation_ids, str(out.message_id)]
        t.outgoing.append(out)

    def _compensation_timeout(self, step: Step, step_state: StepState) -> float:
        # Back off between compensation retries: timeout, 2x, 4x ... capped at 10 minutes.
        return min(step.timeout.total_seconds() * 2 ** max(step_state.compensation_attempts - 1, 0), 600.0)

    def _index(self, name: str) -> int:
        for index, step in enumerate(self.definition.steps):
            if step.name == name:
                return index
        raise ValueError(f"no step {name!r} in saga {self.definition.name}")


def _earlier_attempt(step_state: StepState, causation_id: uuid.UUID | None, attempt: int | None) -> bool:
    """Whether a compensation reply answers an attempt the saga has moved past (an operator
    retried since). Replies name their attempt; older ones only the command they answer."""
    if attempt is not None and step_state.compensation_round:
        return attempt != step_state.compensation_round
    return bool(causation_id is not None and step_state.compensation_command_id
                and str(causation_id) != step_state.compensation_command_id)


def _forget(state: SagaState, step: Step) -> None:
    for key in step.forget:
        state.data.pop(key, None)


def _context(state: SagaState) -> dict[str, Any]:
    """What a compensation is built from: the saga's data and why it is compensating."""
    return state.data | {"failed_step": state.failed_step, "failure_reason": state.failure_reason}


def _copy(state: SagaState) -> SagaState:
    return replace(state, data=dict(state.data),
                   steps=[replace(s, escalation_ids=list(s.escalation_ids)) for s in state.steps])
