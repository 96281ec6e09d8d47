"""The saga engine: pure functions from (saga state, input) to (new state, messages to send).

No I/O happens here. Persistence and messaging wrap the engine (see ``handlers.py``), so
every transition can be tested by giving a state and a reply and checking the commands.

States (see docs/design.md for the diagram):

* saga: ``running`` -> ``completed``; ``running`` -> ``compensating`` -> ``compensated`` or
  ``needs_intervention``.
* step: ``pending`` -> ``running`` -> ``succeeded`` | ``failed`` | ``timed_out``;
  ``succeeded``/``timed_out`` -> ``compensating`` -> ``compensated`` | ``compensation_failed``.

A reply is accepted only by a step in a status that expects it: :data:`ACCEPTS` says which
kinds of reply each step status takes. Anything else (a duplicate, a reply that arrives after
a timeout, a reply for another saga's step) changes nothing but the history.

A definition may name a pivot: the step after which the saga can only go forward. Steps
after it are never compensated; one that is refused, or stays silent through its budget,
is escalated to a person and the steps after it still run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from contracts.messages import (
    CompensationEscalated,
    FailureReply,
    Reply,
    SagaStartFailed,
    SettlementConflict,
    SettleStep,
)
from contracts.topology import SAGA_ESCALATIONS
from messaging.envelope import Message


class SagaStatus(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    NEEDS_INTERVENTION = "needs_intervention"


FINAL_STATUSES = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.NEEDS_INTERVENTION})


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ESCALATED = "escalated"
    """After the pivot: refused, or silent through its budget; handed to a person."""
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


class ReplyKind(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    COMPENSATED = "compensated"
    COMPENSATION_REFUSED = "compensation_refused"


ACCEPTS: dict[StepStatus, frozenset[ReplyKind]] = {
    StepStatus.RUNNING: frozenset({ReplyKind.SUCCESS, ReplyKind.FAILURE}),
    StepStatus.COMPENSATING: frozenset({ReplyKind.COMPENSATED, ReplyKind.COMPENSATION_REFUSED}),
    # An acknowledgement that comes after the step was escalated for lack of one still
    # means the effect is undone: the step is compensated after all.
    StepStatus.COMPENSATION_FAILED: frozenset({ReplyKind.COMPENSATED}),
    # Likewise a step after the pivot that answers after it was escalated is done after all.
    StepStatus.ESCALATED: frozenset({ReplyKind.SUCCESS}),
}
"""Which replies a step takes in each status; every other status takes none."""


MAX_RESEND_INTERVAL = timedelta(seconds=5)
MAX_SENDS = 3
"""Copies of a step's command at most (the first and two resends). A crashed participant
needs one resend after it died; more would only add load when replies are late because
every queue is backed up, which is when load hurts most."""

# --------------------------------------------------------------------------- definition
Data = dict[str, Any]


@dataclass(frozen=True)
class Invoke:
    """Send ``build(saga data)`` to ``participant``'s queue and wait for one of the replies."""

    command: type[Message]
    build: Callable[[Data], Message]
    success: type[Reply]
    failure: type[FailureReply] | None = None
    keep: tuple[str, ...] = ()
    """Fields of the success reply added to the saga's data, for later steps and compensations."""


@dataclass(frozen=True)
class Local:
    """A step done by whoever starts the saga, in the transaction that starts it."""

    why: str


@dataclass(frozen=True)
class Step:
    name: str
    participant: str
    """Logical name of the participant's command queue."""
    action: Invoke | Local
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
    formerly: tuple[str, ...] = ()
    """Names the step had before: a saga keeps the names it started with, so one started
    under a former name still runs this step under that name."""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.formerly)

    @property
    def invokes(self) -> tuple[Invoke, ...]:
        return tuple(i for i in (self.action, self.compensation) if isinstance(i, Invoke))


@dataclass(frozen=True)
class Notify:
    """A command sent when the saga ends, with no reply expected."""

    participant: str
    build: Callable[[Data], Message]


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    subject: str
    """The key of the saga's data naming what the saga is about (its subject), stored with the saga."""
    steps: tuple[Step, ...]
    start: type[Message] | None = None
    """The command that starts it: the orchestrator routes it here."""
    pivot: str | None = None
    """The step after which the saga only goes forward: later steps are retried within the
    budget, escalated if they still fail, and never compensated."""
    reports_to: str | None = None
    """Queue told of every change of the saga's status (:class:`SagaStatusChanged`) after its
    start: the initiator records the saga as running when it sends the start command."""
    on_completed: tuple[Notify, ...] = ()
    on_compensated: tuple[Notify, ...] = ()
    forget_when_done: tuple[str, ...] = ()
    """Saga data erased once the saga is final (after ``on_*`` messages were built from it)."""
    max_compensation_attempts: int = 5
    """Compensation sends (first try plus retries on timeout) before escalating."""
    budget: timedelta | None = None
    """Time from the start within which the saga should end. A step may use what the steps
    before it left, minus the least time (``timeout``) of each step after it; so a participant
    that restarts within the budget still finishes its step, and the saga its run."""

    def __post_init__(self) -> None:
        named: dict[str, str] = {}
        for step in self.steps:
            for name in step.names:
                if named.setdefault(name, step.name) != step.name:
                    raise ValueError(f"steps {named[name]} and {step.name} are both called {name} in saga {self.name}")
        seen: dict[type, str] = {}
        for step in self.steps:
            for invoke in step.invokes:
                for reply in (invoke.success, invoke.failure):
                    if reply is not None and seen.setdefault(reply, step.name) != step.name:
                        raise ValueError(f"{reply.__name__} answers both {seen[reply]} and {step.name}")
        if self.pivot is not None:
            self.index(self.pivot)

    def step(self, name: str) -> Step:
        return self.steps[self.index(name)]

    def index(self, name: str) -> int:
        """The position of the step called ``name`` now or formerly."""
        for index, step in enumerate(self.steps):
            if name in step.names:
                return index
        raise ValueError(f"no step {name!r} in saga {self.name}")


# --------------------------------------------------------------------------- state
@dataclass
class StepState:
    name: str
    status: StepStatus = StepStatus.PENDING
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
    subject: str
    status: SagaStatus
    data: Data
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
    judge_after: datetime | None = None
    """For a deadline pass: the earliest silence still waiting for the replies to be read;
    nothing changes for it before the cutoff passes this time."""

    @property
    def changed(self) -> bool:
        return bool(self.outgoing) or any(h.event != "reply_ignored" for h in self.history)


# --------------------------------------------------------------------------- engine
_Route = tuple[Step, ReplyKind]


class SagaEngine:
    """Runs one :class:`SagaDefinition`. Every method returns a new state; inputs are not mutated."""

    def __init__(self, definition: SagaDefinition) -> None:
        self.definition = definition
        self._named = {name: step for step in definition.steps for name in step.names}
        self._replies: dict[type, _Route] = {}
        for step in definition.steps:
            if isinstance(step.action, Invoke):
                self._route(step.action, step, ReplyKind.SUCCESS, ReplyKind.FAILURE)
            if step.compensation is not None:
                self._route(step.compensation, step, ReplyKind.COMPENSATED, ReplyKind.COMPENSATION_REFUSED)

    def _route(self, invoke: Invoke, step: Step, success: ReplyKind, failure: ReplyKind) -> None:
        self._replies[invoke.success] = (step, success)
        if invoke.failure is not None:
            self._replies[invoke.failure] = (step, failure)

    def plan(self, state: SagaState) -> list[Step]:
        """The definition of each of the saga's steps, in the saga's order.

        A saga runs the steps it started with, under the names it started with: the definition's
        own for every saga started since its last change, a former name (:attr:`Step.formerly`)
        for one started before a rename. A step the saga has that the definition no longer has
        cannot be run: that is an error, never a guess."""
        try:
            return [self._named[s.name] for s in state.steps]
        except KeyError as missing:
            raise ValueError(f"saga {state.saga_id} has step {missing}, which saga {self.definition.name} has not") from None

    def position(self, state: SagaState, name: str) -> int:
        """Where the step called ``name`` (now or formerly) is in the saga."""
        step = self._named.get(name)
        for index, planned in enumerate(self.plan(state)):
            if planned is step:
                return index
        raise ValueError(f"no step {name!r} in saga {self.definition.name}")

    def _forward_only(self, state: SagaState, index: int) -> bool:
        """Whether the saga's step at ``index`` comes after the pivot."""
        if self.definition.pivot is None:
            return False
        return index > self.position(state, self.definition.pivot)

    def step_of_message_types(self) -> dict[str, str]:
        """Which step each command and reply type belongs to, for people reading dead letters."""
        steps = {}
        for step in self.definition.steps:
            for invoke in step.invokes:
                for message in (invoke.command, invoke.success, invoke.failure):
                    if message is not None:
                        steps[message.__name__] = step.name
        return steps

    def replies(self) -> frozenset[type]:
        """Every reply type this saga waits for."""
        return frozenset(self._replies)

    # ---- inputs
    def start(self, saga_id: uuid.UUID, data: Data, now: datetime) -> Transition:
        state = SagaState(
            saga_id=saga_id,
            definition=self.definition.name,
            subject=str(data[self.definition.subject]),
            status=SagaStatus.RUNNING,
            data=dict(data),
            steps=[StepState(s.name) for s in self.definition.steps],
            created_at=now,
            updated_at=now,
        )
        t = Transition(state, history=[HistoryEntry("saga_started")])
        for step, step_state in zip(self.definition.steps, state.steps, strict=True):
            if not isinstance(step.action, Local):
                break
            step_state.status, step_state.started_at, step_state.finished_at = StepStatus.SUCCEEDED, now, now
            t.history.append(HistoryEntry("step_succeeded", step.name, step.action.why))
        self._advance(t, now)
        return t

    def settle_unstarted(self, saga_id: uuid.UUID, subject: str, reason: str, now: datetime) -> Transition:
        """The saga about ``subject`` never started: record it as one that could not, undo what
        its initiator did (for an order, cancel it) and escalate. Nothing else ever ran for it;
        a start that arrives later finds the saga and does nothing."""
        key = {self.definition.subject: subject}
        state = SagaState(
            saga_id=saga_id,
            definition=self.definition.name,
            subject=subject,
            status=SagaStatus.RUNNING,
            data=dict(key),
            steps=[StepState(s.name) for s in self.definition.steps],
            created_at=now,
            updated_at=now,
        )
        t = Transition(state, history=[HistoryEntry("saga_start_failed", None, reason)])
        last_done = -1
        for index, (step, step_state) in enumerate(zip(self.definition.steps, state.steps, strict=True)):
            if not isinstance(step.action, Local):
                break
            step_state.status, step_state.started_at, step_state.finished_at = StepStatus.SUCCEEDED, now, now
            last_done = index
        self._begin_compensation(t, self.definition.steps[max(last_done, 0)].name, reason, last_done, now)
        t.outgoing.append(
            Outgoing(None, SagaStartFailed(**key, saga_id=saga_id, reason=reason), f"queue:{SAGA_ESCALATIONS}", False)
        )
        return t

    def on_reply(
        self, state: SagaState, reply: Message, now: datetime, causation_id: uuid.UUID | None = None, attempt: int | None = None
    ) -> Transition:
        """``causation_id`` is the id of the command the reply answers and ``attempt`` the attempt
        it served, where known."""
        t = Transition(_copy(state))
        if type(reply) not in self._replies:
            t.history.append(HistoryEntry("reply_ignored", None, f"{type(reply).__name__} is not part of this saga"))
            return t
        answered, kind = self._replies[type(reply)]
        plan = self.plan(t.state)
        if answered not in plan:
            t.history.append(HistoryEntry("reply_ignored", None, f"{type(reply).__name__} answers a step this saga has not"))
            return t
        index = plan.index(answered)
        step, step_state = plan[index], t.state.steps[index]
        if kind not in ACCEPTS.get(step_state.status, frozenset()):
            t.history.append(
                HistoryEntry("reply_ignored", step_state.name, f"{type(reply).__name__} while step is {step_state.status}")
            )
            return t
        if kind == ReplyKind.COMPENSATION_REFUSED and _earlier_attempt(step_state, causation_id, attempt):
            # The refusal of an earlier attempt, overtaken by a retry: the retry's own answer counts.
            t.history.append(HistoryEntry("reply_ignored", step_state.name, f"{type(reply).__name__} to an earlier attempt"))
            return t
        reason = getattr(reply, "reason", None)
        step_state.deadline, step_state.finished_at = None, now
        t.state.updated_at = now
        if kind in (ReplyKind.SUCCESS, ReplyKind.FAILURE):
            _forget(t.state, step)
        if kind == ReplyKind.SUCCESS:
            escalated = step_state.status == StepStatus.ESCALATED
            step_state.status, step_state.error = StepStatus.SUCCEEDED, None
            assert isinstance(step.action, Invoke)
            t.state.data |= reply.model_dump(mode="json", include=set(step.action.keep))
            t.history.append(HistoryEntry("step_succeeded", step_state.name, "after its escalation" if escalated else None))
            if escalated:
                self._settle_forward(t)
            else:
                self._advance(t, now)
        elif kind == ReplyKind.FAILURE and self._forward_only(t.state, index):
            self._escalate_step(t, index, reason or "refused", now)
            self._advance(t, now)
        elif kind == ReplyKind.FAILURE:
            step_state.status, step_state.error = StepStatus.FAILED, reason
            t.history.append(HistoryEntry("step_failed", step_state.name, reason))
            self._begin_compensation(t, step_state.name, reason, index - 1, now)
        elif kind == ReplyKind.COMPENSATED:
            step_state.status, step_state.error = StepStatus.COMPENSATED, None
            t.history.append(HistoryEntry("step_compensated", step_state.name))
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
        plan = self.plan(t.state)
        for index, step_state in enumerate(t.state.steps):
            if step_state.deadline is None or step_state.deadline > now:
                continue
            step = plan[index]
            running = step_state.status == StepStatus.RUNNING
            # Sending a command again is always safe, so a running step whose budget is not
            # spent gets it again at ``now``. Judging silence is not: a step times out (or
            # escalates), and a compensation gives up, only once its budget lies before the
            # cutoff, i.e. while every reply that could answer it has been read.
            if running and now < self._budget_end(t.state, index):
                step_state.deadline, t.state.updated_at = None, now
                self._send_action(t, index, now, resend=True)
                continue
            silence_until = self._budget_end(t.state, index) if running else step_state.deadline
            resend_compensation = (
                step_state.status == StepStatus.COMPENSATING
                and step_state.compensation_attempts < self.definition.max_compensation_attempts
            )
            if silence_until > cutoff and not resend_compensation:
                # Silence not established yet: wait until the replies are read.
                t.judge_after = silence_until if t.judge_after is None else min(t.judge_after, silence_until)
                continue
            step_state.deadline = None
            t.state.updated_at = now
            if running and self._forward_only(t.state, index):
                _forget(t.state, step)
                self._escalate_step(t, index, f"no reply within {self._waited(t.state, index):.3g}s", now)
                self._advance(t, now)
            elif step_state.status == StepStatus.RUNNING:
                step_state.status, step_state.finished_at = StepStatus.TIMED_OUT, now
                _forget(t.state, step)
                step_state.error = f"no reply within {self._waited(t.state, index):.3g}s"
                t.history.append(HistoryEntry("step_timed_out", step_state.name, step_state.error))
                t.state.status, t.state.failed_step = SagaStatus.COMPENSATING, step_state.name
                t.state.failure_reason = f"{step_state.name} timed out"
                self._forget_unrun(t.state)
                t.history.append(HistoryEntry("compensation_started", step_state.name, t.state.failure_reason))
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
            elif step_state.status == StepStatus.COMPENSATING:
                error = f"compensation not acknowledged within {self._compensation_timeout(step, step_state):g}s"
                t.history.append(HistoryEntry("compensation_timed_out", step_state.name, error))
                if step_state.compensation_attempts < self.definition.max_compensation_attempts:
                    step_state.error = error
                    self._send_compensation(t, index, now)
                else:
                    self._compensation_failed(t, index, error, now)
                    self._compensate_from(t, index - 1, now)
        return t

    def retry_compensation(self, state: SagaState, step_name: str, now: datetime, actor: str) -> Transition:
        """Operator action: send a failed compensation, or an escalated step after the pivot, again."""
        t = Transition(_copy(state))
        index = self.position(t.state, step_name)
        step_state = t.state.steps[index]
        if step_state.status == StepStatus.ESCALATED:
            t.state.status, t.state.updated_at = SagaStatus.RUNNING, now
            step_state.status, step_state.sends, step_state.started_at = StepStatus.RUNNING, 0, now
            t.history.append(HistoryEntry("operator_retry_step", step_state.name, f"by {actor}"))
            self._send_action(t, index, now, resend=True, deadline=now + self.plan(t.state)[index].timeout)
            return t
        if step_state.status != StepStatus.COMPENSATION_FAILED:
            raise ValueError(
                f"step {step_state.name} is {step_state.status}, not {StepStatus.COMPENSATION_FAILED} or {StepStatus.ESCALATED}"
            )
        t.state.status, t.state.updated_at = SagaStatus.COMPENSATING, now
        step_state.compensation_attempts = 0
        step_state.compensation_round += 1
        t.history.append(HistoryEntry("operator_retry_compensation", step_state.name, f"by {actor}"))
        self._send_compensation(t, index, now)
        return t

    def resolve(self, state: SagaState, reason: str, now: datetime, actor: str) -> Transition:
        """Operator action: a person fixed the effects by hand; close the saga."""
        t = Transition(_copy(state))
        if t.state.status not in (SagaStatus.NEEDS_INTERVENTION, SagaStatus.COMPENSATING):
            raise ValueError(
                f"saga is {t.state.status}; only {SagaStatus.NEEDS_INTERVENTION} or"
                f" {SagaStatus.COMPENSATING} sagas are resolved by hand"
            )
        if any(s.status == StepStatus.ESCALATED for s in t.state.steps):
            # Past the pivot: what the person did completes the escalated steps; nothing is undone.
            t.history.append(HistoryEntry("operator_resolved", None, f"by {actor}: {reason}"))
            for step_state in t.state.steps:
                if step_state.status == StepStatus.ESCALATED:
                    step_state.status, step_state.deadline = StepStatus.SUCCEEDED, None
            t.state.updated_at = now
            self._settle_forward(t)
            return t
        told: list[HistoryEntry] = []
        for step, step_state in zip(self.plan(t.state), t.state.steps, strict=True):
            # A compensation still in flight is settled too, so that it cannot escalate
            # a saga that a person has already closed.
            if step_state.status in (StepStatus.COMPENSATION_FAILED, StepStatus.COMPENSATING):
                step_state.status = StepStatus.COMPENSATED
                step_state.deadline = None
                # The participant learns it too: a compensation still queued, or redriven
                # from a dead-letter queue later, must not undo the step a second time.
                settle = SettleStep(**{self.definition.subject: t.state.subject}, reason=reason[:500])
                t.outgoing.append(
                    Outgoing(
                        step_state.name, settle, f"queue:{step.participant}", True, attempt=max(step_state.compensation_round, 1)
                    )
                )
                told.append(HistoryEntry("settlement_sent", step_state.name, "the participant is told the step was settled"))
        t.state.status, t.state.updated_at = SagaStatus.COMPENSATING, now
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
        detail = "its compensation had already run when the step was settled by hand: undo the manual action"
        t.history.append(HistoryEntry("compensation_ran_before_settlement", step_name, detail))
        t.outgoing.append(
            Outgoing(
                step_name,
                SettlementConflict(
                    **{self.definition.subject: t.state.subject}, saga_id=t.state.saga_id, step=step_name, detail=detail
                ),
                f"queue:{SAGA_ESCALATIONS}",
                False,
            )
        )
        return t

    # ---- transitions
    def _advance(self, t: Transition, now: datetime) -> None:
        for index, step_state in enumerate(t.state.steps):
            if step_state.status == StepStatus.RUNNING:
                return
            if step_state.status == StepStatus.PENDING:
                step_state.status, step_state.started_at = StepStatus.RUNNING, now
                step_state.attempts += 1
                self._send_action(t, index, now, resend=False)
                return
        self._settle_forward(t)

    def _settle_forward(self, t: Transition) -> None:
        """Every step has run: the saga is completed, or needs a person for its escalated steps."""
        if any(s.status in (StepStatus.RUNNING, StepStatus.PENDING) for s in t.state.steps):
            return
        if any(s.status == StepStatus.ESCALATED for s in t.state.steps):
            self._finish(t, SagaStatus.NEEDS_INTERVENTION, ())
        else:
            self._finish(t, SagaStatus.COMPLETED, self.definition.on_completed)

    def _finish(self, t: Transition, status: SagaStatus, notices: tuple[Notify, ...]) -> None:
        if t.state.status == status:
            return
        t.state.status = status
        t.history.append(HistoryEntry("saga_" + status))
        for notify in notices:
            t.outgoing.append(Outgoing(None, notify.build(_context(t.state)), f"queue:{notify.participant}", False))
        for key in self.definition.forget_when_done:
            t.state.data.pop(key, None)

    def _send_action(self, t: Transition, index: int, now: datetime, *, resend: bool, deadline: datetime | None = None) -> None:
        """Send the step's command; the next deadline is the next resend or the end of its budget."""
        step, step_state = self.plan(t.state)[index], t.state.steps[index]
        assert isinstance(step.action, Invoke), f"{step.name} is done locally"
        step_state.sends += 1
        budget_end = deadline or self._budget_end(t.state, index)
        step_state.deadline = budget_end
        if step.resend_after is not None and step_state.sends < MAX_SENDS:
            resend_at = now + min(step.resend_after * 2 ** (step_state.sends - 1), MAX_RESEND_INTERVAL)
            step_state.deadline = min(budget_end, resend_at)
        t.outgoing.append(
            Outgoing(
                step_state.name, step.action.build(t.state.data), f"queue:{step.participant}", True, attempt=step_state.attempts
            )
        )
        if resend:
            t.history.append(HistoryEntry("step_resent", step_state.name, f"send {step_state.sends}, no reply yet"))
        else:
            t.history.append(HistoryEntry("step_started", step_state.name))

    def budget_end(self, state: SagaState, step: str) -> datetime:
        """When ``step``, running, times out (for operators and tests: the engine's own rule)."""
        return self._budget_end(state, self.position(state, step))

    def _budget_end(self, state: SagaState, index: int) -> datetime:
        """When a running step has timed out: after its own least time, or later if the saga's
        budget leaves room once every later step has its least time."""
        plan, started = self.plan(state), state.steps[index].started_at
        assert started is not None
        own = started + plan[index].timeout
        if self.definition.budget is None:
            return own
        later = sum((s.timeout for s in plan[index + 1 :] if isinstance(s.action, Invoke)), timedelta())
        return max(own, state.created_at + self.definition.budget - later)

    def _waited(self, state: SagaState, index: int) -> float:
        started = state.steps[index].started_at
        assert started is not None
        return (self._budget_end(state, index) - started).total_seconds()

    def _begin_compensation(self, t: Transition, step: str, reason: str | None, start: int, now: datetime) -> None:
        t.state.status, t.state.failed_step, t.state.failure_reason = SagaStatus.COMPENSATING, step, reason
        self._forget_unrun(t.state)
        t.history.append(HistoryEntry("compensation_started", step, reason))
        self._compensate_from(t, start, now)

    def _forget_unrun(self, state: SagaState) -> None:
        """Steps that will never run now need none of the data kept for them."""
        for step, step_state in zip(self.plan(state), state.steps, strict=True):
            if step_state.status == StepStatus.PENDING:
                _forget(state, step)

    def _compensate_from(self, t: Transition, start: int, now: datetime) -> None:
        """Compensate the latest applied step at or before ``start``, or finish the saga."""
        plan = self.plan(t.state)
        for index in range(start, -1, -1):
            step, step_state = plan[index], t.state.steps[index]
            if step_state.status in (StepStatus.COMPENSATING, StepStatus.RUNNING):
                return  # still waiting on it (an operator retry runs alongside)
            if step_state.status not in (StepStatus.SUCCEEDED, StepStatus.TIMED_OUT):
                continue
            if step.compensation is None:
                continue  # nothing to undo (documented per step)
            step_state.compensation_attempts = 0
            step_state.compensation_round += 1
            self._send_compensation(t, index, now)
            return
        if any(s.status == StepStatus.COMPENSATION_FAILED for s in t.state.steps):
            self._finish(t, SagaStatus.NEEDS_INTERVENTION, ())
        else:
            self._finish(t, SagaStatus.COMPENSATED, self.definition.on_compensated)

    def _send_compensation(self, t: Transition, index: int, now: datetime) -> None:
        step, step_state = self.plan(t.state)[index], t.state.steps[index]
        assert step.compensation is not None
        step_state.status = StepStatus.COMPENSATING
        step_state.compensation_attempts += 1
        step_state.finished_at = None
        step_state.deadline = now + timedelta(seconds=self._compensation_timeout(step, step_state))
        command = Outgoing(
            step_state.name,
            step.compensation.build(_context(t.state)),
            f"queue:{step.participant}",
            True,
            attempt=max(step_state.compensation_round, 1),
        )
        step_state.compensation_command_id = str(command.message_id)
        t.outgoing.append(command)
        t.history.append(HistoryEntry("compensation_sent", step_state.name, f"attempt {step_state.compensation_attempts}"))

    def _compensation_failed(self, t: Transition, index: int, error: str, now: datetime) -> None:
        step, step_state = self.plan(t.state)[index], t.state.steps[index]
        assert step.compensation is not None
        step_state.status, step_state.error, step_state.deadline, step_state.finished_at = (
            StepStatus.COMPENSATION_FAILED,
            error,
            None,
            now,
        )
        t.history.append(HistoryEntry("compensation_failed", step_state.name, error))
        self._escalation(t, index, step.compensation.build(_context(t.state)), error, step_state.compensation_attempts)

    def _escalate_step(self, t: Transition, index: int, error: str, now: datetime) -> None:
        """A step after the pivot that cannot be done: a person takes it over, the saga goes on."""
        step, step_state = self.plan(t.state)[index], t.state.steps[index]
        assert isinstance(step.action, Invoke)
        step_state.status, step_state.error, step_state.deadline, step_state.finished_at = (
            StepStatus.ESCALATED,
            error,
            None,
            now,
        )
        t.history.append(HistoryEntry("step_escalated", step_state.name, error))
        self._escalation(t, index, step.action.build(t.state.data), error, step_state.sends)

    def _escalation(self, t: Transition, index: int, command: Message, error: str, attempts: int) -> None:
        step_state = t.state.steps[index]
        step = step_state.name
        escalation = CompensationEscalated(
            saga_id=t.state.saga_id,
            definition=t.state.definition,
            subject=t.state.subject,
            step=step,
            command={"type": command.message_type(), "payload": command.model_dump(mode="json")},
            last_error=error[:500],
            attempts=attempts,
        )
        out = Outgoing(step, escalation, f"queue:{SAGA_ESCALATIONS}", False)
        # Remembered so that an operator's action removes exactly these from the queue.
        step_state.escalation_ids = [*step_state.escalation_ids, str(out.message_id)]
        t.outgoing.append(out)

    def _compensation_timeout(self, step: Step, step_state: StepState) -> float:
        # Back off between compensation retries: timeout, 2x, 4x ... capped at 10 minutes.
        return min(step.timeout.total_seconds() * 2.0 ** max(step_state.compensation_attempts - 1, 0), 600.0)


def _earlier_attempt(step_state: StepState, causation_id: uuid.UUID | None, attempt: int | None) -> bool:
    """Whether a compensation reply answers an attempt the saga has moved past (an operator
    retried since). Replies name their attempt; older ones only the command they answer."""
    if attempt is not None and step_state.compensation_round:
        return attempt != step_state.compensation_round
    return bool(
        causation_id is not None
        and step_state.compensation_command_id
        and str(causation_id) != step_state.compensation_command_id
    )


def _forget(state: SagaState, step: Step) -> None:
    for key in step.forget:
        state.data.pop(key, None)


def _context(state: SagaState) -> Data:
    """What a compensation or an end notice is built from: the saga's data and why it failed."""
    return state.data | {"failed_step": state.failed_step, "failure_reason": state.failure_reason}


def _copy(state: SagaState) -> SagaState:
    return replace(state, data=dict(state.data), steps=[replace(s, escalation_ids=list(s.escalation_ids)) for s in state.steps])


class SagaRegistry:
    """Every saga definition the orchestrator runs, by name and by the command that starts it."""

    def __init__(self, *definitions: SagaDefinition) -> None:
        self.engines = {d.name: SagaEngine(d) for d in definitions}
        if len(self.engines) != len(definitions):
            raise ValueError("two saga definitions share a name")

    def __getitem__(self, name: str) -> SagaEngine:
        return self.engines[name]

    def starts(self) -> frozenset[type]:
        return frozenset(e.definition.start for e in self.engines.values() if e.definition.start is not None)

    def replies(self) -> frozenset[type]:
        return frozenset().union(*(e.replies() for e in self.engines.values()))

    def step_of_message_types(self) -> dict[str, str]:
        return {k: v for e in self.engines.values() for k, v in e.step_of_message_types().items()}
