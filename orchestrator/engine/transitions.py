"""The saga engine: pure functions from (saga state, input) to a :class:`Transition`.

No I/O happens here, and nothing of the system that runs the saga: a transition says what to
send to which participant (:class:`Send`), what to hand to a person (:class:`Escalate`) and
which participant to tell that a step was settled by hand (:class:`Settle`); the orchestrator
turns those into its own messages and addresses. So every transition can be tested by giving
a state and a reply and checking the actions.

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

import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from messaging.envelope import Message

from .definition import Data, Invoke, Local, Notify, SagaDefinition, Step
from .state import HistoryEntry, HistoryEvent, SagaState, SagaStatus, StepState, StepStatus

E = HistoryEvent


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


# --------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Send:
    """A command for a step's participant, or a notice when the saga ends (no step)."""

    participant: str
    """Logical name of the participant's command queue."""
    message: Message
    step: str | None = None
    attempt: int | None = None
    """With the saga and the step, the command's identity: every resend of an attempt shares it."""
    expects_reply: bool = True
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)
    """The envelope's id: replies name it as their causation."""


class Escalation(StrEnum):
    STEP = "step"
    """A compensation that could not complete, or a step after the pivot that could not be done."""
    START = "start"
    """A saga that never started: what its initiator did was undone."""
    SETTLED_TWICE = "settled_twice"
    """A step settled by hand had already been compensated: the manual action undid it again."""


@dataclass(frozen=True)
class Escalate:
    """Something a person must take over."""

    kind: Escalation
    step: str | None
    detail: str
    command: Message | None = None
    """For :attr:`Escalation.STEP`: the command that could not complete, ready to be sent again."""
    attempts: int = 0
    """How often ``command`` was sent."""
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)
    """Kept in the step's ``escalation_ids``, so an operator's action finds exactly these."""


@dataclass(frozen=True)
class Settle:
    """Tell a step's participant that a person settled the step by hand: a compensation that
    reaches it later must not undo the step again. It answers whether one already had."""

    participant: str
    step: str
    reason: str
    attempt: int
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)


Outgoing = Send | Escalate | Settle


@dataclass
class Transition:
    state: SagaState
    outgoing: list[Outgoing] = field(default_factory=list)
    """What to send, escalate and settle, in the order the engine decided it."""
    history: list[HistoryEntry] = field(default_factory=list)
    judge_after: datetime | None = None
    """For a deadline pass: the earliest silence still waiting for the replies to be read;
    nothing changes for it before the cutoff passes this time."""
    by_operator: bool = False
    """An operator's recorded action (resolve, retry): the only way out of needs_intervention."""

    @property
    def changed(self) -> bool:
        return bool(self.outgoing) or any(h.event != E.REPLY_IGNORED for h in self.history)

    @property
    def sends(self) -> list[Send]:
        return [o for o in self.outgoing if isinstance(o, Send)]

    @property
    def escalations(self) -> list[Escalate]:
        return [o for o in self.outgoing if isinstance(o, Escalate)]

    @property
    def settlements(self) -> list[Settle]:
        return [o for o in self.outgoing if isinstance(o, Settle)]


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
        if self.definition.settles_unstarted is not None:
            steps[self.definition.settles_unstarted.__name__] = self._unstarted_failure()
        return steps

    def _done_at_start(self) -> tuple[Step, ...]:
        """The leading steps the initiator does itself, in the transaction that starts the saga."""
        return tuple(itertools.takewhile(lambda s: isinstance(s.action, Local), self.definition.steps))

    def _unstarted_failure(self) -> str:
        """The step a saga that never started is recorded as failed at: the last one its
        initiator did, whose compensations are then run (or, with none, the first)."""
        return (self._done_at_start() or self.definition.steps[:1])[-1].name

    def genuine_origin(self, state: SagaState, reply: type) -> tuple[uuid.UUID | None, str | None]:
        """The causation and participant a genuine ``reply`` to the saga's latest command for
        its step carries (None, None when the saga sent none): for tests and tools that play a
        participant."""
        route = self._replies.get(reply)
        if route is None or route[0] not in (plan := self.plan(state)):
            return None, None
        step = route[0]
        step_state = state.steps[plan.index(step)]
        sent = step_state.compensation_ids if route[1] in _COMPENSATION_REPLIES else step_state.command_ids
        return (uuid.UUID(sent[-1]) if sent else None), step.participant

    def replies(self) -> frozenset[type]:
        """Every reply type this saga waits for."""
        return frozenset(self._replies)

    # ---- inputs
    def start(self, saga_id: uuid.UUID, data: Data, now: datetime) -> Transition:
        state = SagaState(
            saga_id=saga_id,
            definition=self.definition.name,
            version=self.definition.version,
            subject=str(data[self.definition.subject]),
            status=SagaStatus.RUNNING,
            data=dict(data),
            steps=[StepState(s.name) for s in self.definition.steps],
            created_at=now,
            updated_at=now,
        )
        t = Transition(state, history=[HistoryEntry(E.SAGA_STARTED)])
        for step, step_state in zip(self.definition.steps, state.steps, strict=True):
            if not isinstance(step.action, Local):
                break
            step_state.status, step_state.started_at, step_state.finished_at = StepStatus.SUCCEEDED, now, now
            t.history.append(HistoryEntry(E.STEP_SUCCEEDED, step.name, step.action.why))
        self._advance(t, now)
        return t

    def settle_unstarted(self, saga_id: uuid.UUID, subject: str, reason: str, now: datetime) -> Transition:
        """The saga about ``subject`` never started: record it as one that could not, undo what
        its initiator did (the compensations of the steps it does itself, :class:`Local`) and
        escalate. Nothing else ever ran for it; a start that arrives later finds the saga and
        does nothing."""
        state = SagaState(
            saga_id=saga_id,
            definition=self.definition.name,
            version=self.definition.version,
            subject=subject,
            status=SagaStatus.RUNNING,
            data={self.definition.subject: subject},
            steps=[StepState(s.name) for s in self.definition.steps],
            created_at=now,
            updated_at=now,
        )
        t = Transition(state, history=[HistoryEntry(E.SAGA_START_FAILED, None, reason)])
        done = self._done_at_start()
        for step_state in state.steps[: len(done)]:
            step_state.status, step_state.started_at, step_state.finished_at = StepStatus.SUCCEEDED, now, now
        failed = self._unstarted_failure()
        self._begin_compensation(t, failed, reason, len(done) - 1, now)
        t.outgoing.append(Escalate(Escalation.START, failed, reason))
        return t

    def on_reply(
        self,
        state: SagaState,
        reply: Message,
        now: datetime,
        *,
        causation_id: uuid.UUID | None,
        participant: str | None,
        attempt: int | None = None,
    ) -> Transition:
        """``causation_id`` is the id of the command the reply says it answers, ``participant``
        the participant its sender is (None: a sender that is none of them) and ``attempt`` the
        attempt it served, where known.

        A reply is the answer to a command, or nothing: it is taken only when its causation is
        one of the sends of the step's outstanding command (any resend of it) and it comes from
        the step's participant. Anything else is refused and recorded, and moves nothing: a
        forged reply, one from the wrong participant, a reply of another saga replayed."""
        t = Transition(state.copy())
        if type(reply) not in self._replies:
            t.history.append(HistoryEntry(E.REPLY_IGNORED, None, f"{type(reply).__name__} is not part of this saga"))
            return t
        answered, kind = self._replies[type(reply)]
        plan = self.plan(t.state)
        if answered not in plan:
            t.history.append(HistoryEntry(E.REPLY_IGNORED, None, f"{type(reply).__name__} answers a step this saga has not"))
            return t
        index = plan.index(answered)
        step, step_state = plan[index], t.state.steps[index]
        if refusal := _unauthentic(step, step_state, kind, causation_id, participant):
            t.history.append(HistoryEntry(E.REPLY_REFUSED, step_state.name, f"{type(reply).__name__} {refusal}"))
            return t
        if kind not in ACCEPTS.get(step_state.status, frozenset()):
            t.history.append(
                HistoryEntry(E.REPLY_IGNORED, step_state.name, f"{type(reply).__name__} while step is {step_state.status}")
            )
            return t
        if kind == ReplyKind.COMPENSATION_REFUSED and _earlier_attempt(step_state, causation_id, attempt):
            # The refusal of an earlier attempt, overtaken by a retry: the retry's own answer counts.
            t.history.append(HistoryEntry(E.REPLY_IGNORED, step_state.name, f"{type(reply).__name__} to an earlier attempt"))
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
            t.history.append(HistoryEntry(E.STEP_SUCCEEDED, step_state.name, "after its escalation" if escalated else None))
            if escalated:
                self._settle_forward(t)
            else:
                self._advance(t, now)
        elif kind == ReplyKind.FAILURE and self._forward_only(t.state, index):
            self._escalate_step(t, index, reason or "refused", now)
            self._advance(t, now)
        elif kind == ReplyKind.FAILURE:
            step_state.status, step_state.error = StepStatus.FAILED, reason
            t.history.append(HistoryEntry(E.STEP_FAILED, step_state.name, reason))
            self._begin_compensation(t, step_state.name, reason, index - 1, now)
        elif kind == ReplyKind.COMPENSATED:
            step_state.status, step_state.error = StepStatus.COMPENSATED, None
            t.history.append(HistoryEntry(E.STEP_COMPENSATED, step_state.name))
            self._compensate_from(t, index - 1, now)
        else:
            self._compensation_failed(t, index, reason or "compensation refused", now)
            self._compensate_from(t, index - 1, now)
        return t

    def due_resends(self, state: SagaState, now: datetime) -> set[str]:
        """The participants that :meth:`on_deadline` at ``now`` would send a running step's
        command again (the caller may look whether their queues are backed up)."""
        plan = self.plan(state)
        return {
            plan[index].participant
            for index, s in enumerate(state.steps)
            if s.status == StepStatus.RUNNING
            and s.deadline is not None
            and s.deadline <= now
            and now < self._budget_end(state, index)
            and isinstance(plan[index].action, Invoke)
        }

    def on_deadline(
        self, state: SagaState, now: datetime, cutoff: datetime | None = None, queued: Mapping[str, int] | None = None
    ) -> Transition:
        """Handle every step whose deadline has passed.

        Sending a command again is always safe, so resends happen at ``now``. Judging silence
        is not: a step times out, and a compensation escalates, only for deadlines up to
        ``cutoff`` (default ``now``), i.e. while every reply that could answer them has been read.

        ``queued`` gives, for participants whose queue holds messages not yet taken, how many:
        a resend due to one of them is deferred to the next resend time instead (the command
        is waiting behind the others, not lost; a copy would only double the work). The
        budget is not: the step still times out when it is spent.
        """
        t = Transition(state.copy())
        if state.paused_at is not None:  # a paused saga's deadlines wait (resume extends its budget)
            return t
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
                waiting = (queued or {}).get(step.participant, 0)
                if waiting:
                    interval = self._resend_interval(step, step_state) or MAX_RESEND_INTERVAL
                    step_state.deadline = min(self._budget_end(t.state, index), now + interval)
                    detail = f"{waiting} messages waiting at {step.participant}"
                    t.history.append(HistoryEntry(E.STEP_RESEND_DEFERRED, step_state.name, detail))
                    continue
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
                t.history.append(HistoryEntry(E.STEP_TIMED_OUT, step_state.name, step_state.error))
                t.state.status, t.state.failed_step = SagaStatus.COMPENSATING, step_state.name
                t.state.failure_reason = f"{step_state.name} timed out"
                self._forget_unrun(t.state)
                t.history.append(HistoryEntry(E.COMPENSATION_STARTED, step_state.name, t.state.failure_reason))
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
                t.history.append(HistoryEntry(E.COMPENSATION_TIMED_OUT, step_state.name, error))
                if step_state.compensation_attempts < self.definition.max_compensation_attempts:
                    step_state.error = error
                    self._send_compensation(t, index, now)
                else:
                    self._compensation_failed(t, index, error, now)
                    self._compensate_from(t, index - 1, now)
        return t

    def retry_compensation(self, state: SagaState, step_name: str, now: datetime, actor: str) -> Transition:
        """Operator action: send a failed compensation, or an escalated step after the pivot, again."""
        t = Transition(state.copy(), by_operator=True)
        index = self.position(t.state, step_name)
        step_state = t.state.steps[index]
        if step_state.status == StepStatus.ESCALATED:
            t.state.status, t.state.updated_at = SagaStatus.RUNNING, now
            step_state.status, step_state.sends, step_state.started_at = StepStatus.RUNNING, 0, now
            step_state.command_ids = []  # a new attempt: only its own sends are answered now
            t.history.append(HistoryEntry(E.OPERATOR_RETRY_STEP, step_state.name, f"by {actor}"))
            self._send_action(t, index, now, resend=True, deadline=now + self.definition.least_time(self.plan(t.state)[index]))
            return t
        if step_state.status != StepStatus.COMPENSATION_FAILED:
            raise ValueError(
                f"step {step_state.name} is {step_state.status}, not {StepStatus.COMPENSATION_FAILED} or {StepStatus.ESCALATED}"
            )
        t.state.status, t.state.updated_at = SagaStatus.COMPENSATING, now
        step_state.compensation_attempts = 0
        step_state.compensation_round += 1
        t.history.append(HistoryEntry(E.OPERATOR_RETRY_COMPENSATION, step_state.name, f"by {actor}"))
        self._send_compensation(t, index, now)
        return t

    def hold(self, state: SagaState, now: datetime, why: str) -> Transition:
        """A saga just started while its definition is paused: held at its start. What its
        start decided to send is not sent (the caller sends nothing of a paused saga's
        commands); :meth:`resume` sends it."""
        t = Transition(state.copy())
        t.state.paused_at, t.state.pause_kind = now, "definition"
        t.history.append(HistoryEntry(E.SAGA_HELD, None, why))
        return t

    def pause(self, state: SagaState, now: datetime, actor: str, reason: str) -> Transition:
        """Operator action: the saga sends no further command and its deadlines wait until resumed."""
        if state.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED):
            raise ValueError(f"saga is {state.status}: there is nothing to pause")
        if state.paused_at is not None:
            raise ValueError("saga is paused already")
        t = Transition(state.copy())
        t.state.paused_at, t.state.pause_kind = now, "saga"
        t.history.append(HistoryEntry(E.SAGA_PAUSED, None, f"by {actor}: {reason}" if reason else f"by {actor}"))
        return t

    def resume(self, state: SagaState, now: datetime, actor: str) -> Transition:
        """Operator action (or its definition resumed): every running step gets its command and
        every compensating step its compensation, sent again, with the time paused added to
        the budget. Replies that arrived meanwhile were taken in; only the commands waited."""
        if state.paused_at is None:
            raise ValueError("saga is not paused")
        t = Transition(state.copy())
        paused_for = max((now - state.paused_at).total_seconds(), 0.0)
        t.state.paused_at, t.state.pause_kind = None, None
        t.state.paused_seconds += paused_for
        t.history.append(HistoryEntry(E.SAGA_RESUMED, None, f"by {actor} after {paused_for:.0f}s"))
        for index, step_state in enumerate(t.state.steps):
            if step_state.status == StepStatus.RUNNING:
                self._send_action(t, index, now, resend=True)
            elif step_state.status == StepStatus.COMPENSATING:
                self._send_compensation(t, index, now)
        return t

    def resolve(self, state: SagaState, reason: str, now: datetime, actor: str) -> Transition:
        """Operator action: a person fixed the effects by hand; close the saga."""
        t = Transition(state.copy(), by_operator=True)
        if t.state.status not in (SagaStatus.NEEDS_INTERVENTION, SagaStatus.COMPENSATING):
            raise ValueError(
                f"saga is {t.state.status}; only {SagaStatus.NEEDS_INTERVENTION} or"
                f" {SagaStatus.COMPENSATING} sagas are resolved by hand"
            )
        forward = t.state.failed_step is None and not any(
            s.status in (StepStatus.COMPENSATING, StepStatus.COMPENSATION_FAILED) for s in t.state.steps
        )
        if any(s.status == StepStatus.ESCALATED for s in t.state.steps) or forward:
            # Past the pivot: what the person did completes the escalated steps (or the late
            # answers already did); nothing is undone.
            t.history.append(HistoryEntry(E.OPERATOR_RESOLVED, None, f"by {actor}: {reason}"))
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
                t.outgoing.append(Settle(step.participant, step_state.name, reason, max(step_state.compensation_round, 1)))
                told.append(HistoryEntry(E.SETTLEMENT_SENT, step_state.name, "the participant is told the step was settled"))
        t.state.status, t.state.updated_at = SagaStatus.COMPENSATING, now
        t.history.append(HistoryEntry(E.OPERATOR_RESOLVED, None, f"by {actor}: {reason}"))
        t.history += told
        # What the person settled is done; steps below it that are still applied are
        # undone as usual, and the saga is compensated once they are.
        self._compensate_from(t, len(t.state.steps) - 1, now)
        return t

    def on_settled(self, state: SagaState, step_name: str, already_compensated: bool, now: datetime) -> Transition:
        """A participant's answer to a settlement by hand. If its compensation had already run,
        the effect was undone twice: recorded and escalated so that a person undoes the manual action."""
        t = Transition(state.copy())
        if not already_compensated:
            t.history.append(HistoryEntry(E.SETTLEMENT_ACKNOWLEDGED, step_name))
            return t
        detail = "its compensation had already run when the step was settled by hand: undo the manual action"
        t.history.append(HistoryEntry(E.COMPENSATION_RAN_BEFORE_SETTLEMENT, step_name, detail))
        t.outgoing.append(Escalate(Escalation.SETTLED_TWICE, step_name, detail))
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
        if t.state.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED):
            return  # final: no message and no deadline moves it again
        if t.state.status == SagaStatus.NEEDS_INTERVENTION and not t.by_operator:
            # A late answer is taken in (the step's own status says what happened), but the
            # saga waits for the person it was handed to: only their resolve or retry ends it.
            t.history.append(
                HistoryEntry(E.AWAITING_OPERATOR, None, f"would now be {status}: waiting for an operator's resolve or retry")
            )
            return
        t.state.status = status
        t.history.append(HistoryEntry(E.reached(status)))
        for notify in notices:
            t.outgoing.append(Send(notify.participant, notify.build(_context(t.state)), expects_reply=False))
        for key in self.definition.forget_when_done:
            t.state.data.pop(key, None)

    def _send_action(self, t: Transition, index: int, now: datetime, *, resend: bool, deadline: datetime | None = None) -> None:
        """Send the step's command; the next deadline is the next resend or the end of its budget."""
        step, step_state = self.plan(t.state)[index], t.state.steps[index]
        assert isinstance(step.action, Invoke), f"{step.name} is done locally"
        step_state.sends += 1
        budget_end = deadline or self._budget_end(t.state, index)
        step_state.deadline = budget_end
        if step_state.sends < MAX_SENDS and (interval := self._resend_interval(step, step_state)) is not None:
            step_state.deadline = min(budget_end, now + interval)
        command = Send(step.participant, step.action.build(t.state.data), step_state.name, attempt=step_state.attempts)
        step_state.command_ids = [*step_state.command_ids, str(command.message_id)]
        t.outgoing.append(command)
        if resend:
            t.history.append(HistoryEntry(E.STEP_RESENT, step_state.name, f"send {step_state.sends}, no reply yet"))
        else:
            t.history.append(HistoryEntry(E.STEP_STARTED, step_state.name))

    def _resend_interval(self, step: Step, step_state: StepState) -> timedelta | None:
        """Silence after the latest send before the next: doubling per send, at most MAX_RESEND_INTERVAL."""
        resend_after: timedelta | None = self.definition.resend_interval(step)
        if resend_after is None:
            return None
        return min(resend_after * (1 << max(step_state.sends - 1, 0)), MAX_RESEND_INTERVAL)

    def budget_end(self, state: SagaState, step: str) -> datetime:
        """When ``step``, running, times out (for operators and tests: the engine's own rule)."""
        return self._budget_end(state, self.position(state, step))

    def _budget_end(self, state: SagaState, index: int) -> datetime:
        """When a running step has timed out: after its own least time, or later if the saga's
        budget leaves room once every later step has its least time."""
        plan, started = self.plan(state), state.steps[index].started_at
        assert started is not None
        paused = timedelta(seconds=state.paused_seconds)  # time paused is no time spent
        own = started + self.definition.least_time(plan[index]) + paused
        if self.definition.budget is None:
            return own
        later = sum((self.definition.least_time(s) for s in plan[index + 1 :] if isinstance(s.action, Invoke)), timedelta())
        return max(own, state.created_at + self.definition.budget + paused - later)

    def _waited(self, state: SagaState, index: int) -> float:
        started = state.steps[index].started_at
        assert started is not None
        return (self._budget_end(state, index) - started).total_seconds()

    def _begin_compensation(self, t: Transition, step: str, reason: str | None, start: int, now: datetime) -> None:
        t.state.status, t.state.failed_step, t.state.failure_reason = SagaStatus.COMPENSATING, step, reason
        self._forget_unrun(t.state)
        t.history.append(HistoryEntry(E.COMPENSATION_STARTED, step, reason))
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
        if any(s.status in (StepStatus.COMPENSATING, StepStatus.RUNNING) for s in t.state.steps):
            # The chain reached the bottom, but a compensation above it is not acknowledged
            # yet (a timed-out step's undo, sent while the earlier steps were undone): the
            # saga stays compensating until it is, or until it escalates. Never a final
            # status that a later message could take back.
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
        command = Send(
            step.participant, step.compensation.build(_context(t.state)), step_state.name, max(step_state.compensation_round, 1)
        )
        step_state.compensation_command_id = str(command.message_id)
        step_state.compensation_ids = [*step_state.compensation_ids, str(command.message_id)]
        t.outgoing.append(command)
        t.history.append(HistoryEntry(E.COMPENSATION_SENT, step_state.name, f"attempt {step_state.compensation_attempts}"))

    def _compensation_failed(self, t: Transition, index: int, error: str, now: datetime) -> None:
        step, step_state = self.plan(t.state)[index], t.state.steps[index]
        assert step.compensation is not None
        step_state.status, step_state.error, step_state.deadline, step_state.finished_at = (
            StepStatus.COMPENSATION_FAILED,
            error,
            None,
            now,
        )
        t.history.append(HistoryEntry(E.COMPENSATION_FAILED, step_state.name, error))
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
        t.history.append(HistoryEntry(E.STEP_ESCALATED, step_state.name, error))
        self._escalation(t, index, step.action.build(t.state.data), error, step_state.sends)

    def _escalation(self, t: Transition, index: int, command: Message, error: str, attempts: int) -> None:
        step_state = t.state.steps[index]
        step = step_state.name
        out = Escalate(Escalation.STEP, step, error, command, attempts)
        # Remembered so that an operator's action removes exactly these from the queue.
        step_state.escalation_ids = [*step_state.escalation_ids, str(out.message_id)]
        t.outgoing.append(out)

    def _compensation_timeout(self, step: Step, step_state: StepState) -> float:
        # Back off between compensation retries: timeout, 2x, 4x ... capped at 10 minutes.
        least = self.definition.least_time(step).total_seconds()
        return min(least * 2.0 ** max(step_state.compensation_attempts - 1, 0), 600.0)


_COMPENSATION_REPLIES = frozenset({ReplyKind.COMPENSATED, ReplyKind.COMPENSATION_REFUSED})


def _unauthentic(
    step: Step, step_state: StepState, kind: ReplyKind, causation_id: uuid.UUID | None, participant: str | None
) -> str | None:
    """Why a reply does not answer the step's command (None: it does). Its sender must be the
    step's participant, and its causation one of the ids the step's command (or compensation)
    was sent under: a saga id is public (POST /orders returns it), a message id never leaves
    the orchestrator and the participant it was sent to."""
    if participant != step.participant:
        return f"claims to come from {participant or 'a sender that is no participant'}, not {step.participant}"
    if kind in _COMPENSATION_REPLIES:
        # Before compensation_ids, only the latest compensation's id was kept.
        sent = step_state.compensation_ids or [i for i in (step_state.compensation_command_id,) if i]
        unrecorded = False
    else:
        sent = step_state.command_ids
        # Sends made by the previous release, which recorded no ids, are counted in ``sends``
        # but not in ``command_ids``: during that one upgrade their replies are taken on the
        # sender alone (on AWS, the sender is proven by SQS: see messaging.trust).
        unrecorded = step_state.sends > len(sent)
    if causation_id is not None and str(causation_id) in sent:
        return None
    if unrecorded:
        return None
    return f"answers {f'message {causation_id}' if causation_id else 'no message'}, which is no command of this step"


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
