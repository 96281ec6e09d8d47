"""Turning messages and deadlines into saga transitions, each in one local transaction:
lock the saga row, run the pure engine, save the new state and its history, and stage what it
decided in the outbox as this system's messages (:func:`staged`): the engine says what to send
to which participant, what to escalate and what to settle, and this module says with which
message and to which queue."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import messages as c
from contracts.topology import ORCHESTRATOR, ORCHESTRATOR_REPLIES, PARTICIPANT_OF, SAGA_ESCALATIONS
from messaging import metrics, tracing
from messaging.bus import Handlers
from messaging.envelope import Envelope, MalformedMessage, Message
from messaging.received import NotMine
from messaging.uow import UnitOfWork

from . import erasure, repository
from .engine import (
    FINAL_STATUSES,
    Escalate,
    Escalation,
    HistoryEvent,
    Outgoing,
    SagaEngine,
    SagaRegistry,
    SagaState,
    SagaStatus,
    Send,
    StepStatus,
    Transition,
    UnknownVersion,
)

log = structlog.get_logger("orchestrator")
CLOCK_MARGIN = timedelta(seconds=1)
"""Deadlines are set by one orchestrator replica and checked by another: a check staged at T
judges the deadlines up to T less this margin against the difference of their clocks."""
CHECK_AGAIN_AFTER = timedelta(seconds=60)
"""A check staged and not handled by then (dead-lettered, say) is staged again."""
CHECK_BATCH = 100


def now() -> datetime:
    return datetime.now(UTC)


def queue(name: str) -> str:
    """The outbox destination of a queue."""
    return f"queue:{name}"


@dataclass(frozen=True)
class Staged:
    """One of a transition's actions as this system's message, addressed for the outbox."""

    message: Message
    destination: str
    step: str | None
    attempt: int | None
    expects_reply: bool
    message_id: uuid.UUID


def staged(state: SagaState, action: Outgoing) -> Staged:
    """The message and queue of ``action``. Every saga here is about an order: its subject is
    the order's id, which every message of this system carries."""
    if isinstance(action, Send):
        message = action.message
        return Staged(message, queue(action.participant), action.step, action.attempt, action.expects_reply, action.message_id)
    if isinstance(action, Escalate):
        return Staged(_escalation(state, action), queue(SAGA_ESCALATIONS), action.step, None, False, action.message_id)
    settle = c.SettleStep(order_id=state.subject, reason=action.reason[:500])
    return Staged(settle, queue(action.participant), action.step, action.attempt, True, action.message_id)


def _escalation(state: SagaState, escalate: Escalate) -> Message:
    if escalate.kind == Escalation.START:
        return c.SagaStartFailed(order_id=state.subject, saga_id=state.saga_id, reason=escalate.detail[:500])
    if escalate.kind == Escalation.SETTLED_TWICE:
        assert escalate.step is not None
        return c.SettlementConflict(order_id=state.subject, saga_id=state.saga_id, step=escalate.step, detail=escalate.detail)
    assert escalate.step is not None and escalate.command is not None
    return c.CompensationEscalated(
        saga_id=state.saga_id,
        definition=state.definition,
        subject=state.subject,
        step=escalate.step,
        command={"type": escalate.command.message_type(), "payload": escalate.command.model_dump(mode="json")},
        last_error=escalate.detail[:500],
        attempts=escalate.attempts,
    )


class Orchestrator:
    """Runs every saga of a :class:`SagaRegistry`: a start command names its definition, and a
    reply goes to the saga its envelope names, then to that saga's definition."""

    def __init__(self, registry: SagaRegistry, participants: Mapping[str, str] = PARTICIPANT_OF) -> None:
        self.registry = registry
        self.participants = participants
        """Sender (``Envelope.sender``) -> the participant it is, by the queue saga steps name it by."""
        self.backlog: Callable[[str], Awaitable[int]] | None = None
        """Messages waiting at a participant's queue (set once the broker is up): a resend due
        to a participant whose queue is backed up is deferred (``SagaEngine.on_deadline``)."""

    def handlers(self) -> Handlers:
        return {
            **{start: self.start for start in self.registry.starts()},
            **{report: self.settle_unstarted for report in self.registry.unstarted_reports()},
            c.StepSettled: self.on_settled,
            c.CheckSagaDeadlines: self.check_deadlines,
            c.CustomerDataErased: erasure.answered,
            **{reply: self.on_reply for reply in self.registry.replies()},
        }

    def engine(self, state: SagaState) -> SagaEngine:
        """The engine of the version the saga started on; a saga of a version this release
        does not run is left, message and all, for an orchestrator that does."""
        try:
            return self.registry.engine_for(state)
        except UnknownVersion as unknown:
            metrics.SAGA_VERSION_UNKNOWN.labels(unknown.definition, str(unknown.version)).inc()
            raise NotMine(str(unknown)) from unknown

    async def start(self, uow: UnitOfWork, envelope: Envelope, command: c.StartSaga) -> None:
        if envelope.saga_id is None:
            raise MalformedMessage(f"{command.message_type()} without saga_id")
        at = now()
        engine = self.registry[command.definition]
        t = engine.start(envelope.saga_id, command.model_dump(mode="json", exclude={"definition"}), at)
        if pause := await repository.paused_definition(uow.session, command.definition):
            held = engine.hold(t.state, at, f"definition {command.definition} paused by {pause.actor}: {pause.reason}")
            t = Transition(held.state, t.outgoing, t.history + held.history)
        if not await repository.add(uow.session, t.state, tracing.carrier()):
            log.info("saga_already_started")
            return
        metrics.saga_event("started")
        await self._stage(uow, t, at, envelope, None)

    async def settle_unstarted(self, uow: UnitOfWork, envelope: Envelope, command: c.SettleUnstartedSaga) -> None:
        if envelope.saga_id is None:
            raise MalformedMessage("SettleUnstartedSaga without saga_id")
        at = now()
        engine = self.registry.settled_unstarted_by(type(command))
        t = engine.settle_unstarted(envelope.saga_id, str(command.order_id), command.reason, at)
        if not await repository.add(uow.session, t.state):
            log.info("saga_started_after_all")  # it runs, and ends the order itself
            return
        log.warning("saga_start_failed", reason=command.reason)
        metrics.SAGAS.labels("start_failed").inc()
        await self._stage(uow, t, at, envelope, None)

    async def on_settled(self, uow: UnitOfWork, envelope: Envelope, reply: c.StepSettled) -> None:
        state = await repository.load(uow.session, envelope.saga_id) if envelope.saga_id else None
        if state is None or envelope.step is None:
            log.warning("settlement_answer_unmatched")
            return
        at = now()
        t = self.engine(state).on_settled(state, envelope.step, reply.already_compensated, at)
        if reply.already_compensated:
            log.warning("compensation_ran_before_settlement", step=envelope.step)
        await self._commit_transition(uow, state, t, at, envelope)

    async def on_reply(self, uow: UnitOfWork, envelope: Envelope, reply: Message) -> None:
        state = await repository.load(uow.session, envelope.saga_id) if envelope.saga_id else None
        if state is None:
            log.warning("reply_for_unknown_saga")
            return
        at = now()
        t = self.engine(state).on_reply(
            state,
            reply,
            at,
            causation_id=envelope.causation_id,
            participant=self.participants.get(envelope.sender),
            attempt=envelope.attempt,
        )
        await self._commit_transition(uow, state, t, at, envelope)

    async def check_deadlines(self, uow: UnitOfWork, envelope: Envelope, command: c.CheckSagaDeadlines) -> None:
        """Judge the saga's deadlines that passed by the time the check was staged.

        The check travels in the saga's FIFO group of ``orchestrator-replies``, so every reply
        that reached the queue before it has been handled (or dead-lettered) by now, by
        whichever replica: a step whose reply is not in the saga's state was really silent
        until ``checked_at``. Resends need no such proof and happen for every deadline passed."""
        state = await repository.load(uow.session, envelope.saga_id) if envelope.saga_id else None
        if state is None:
            log.warning("deadline_check_for_unknown_saga")
            return
        at = now()
        engine = self.engine(state)
        queued = await self._queued(engine.due_resends(state, at))
        # A check proves silence only up to when it was staged, never beyond this moment.
        t = engine.on_deadline(state, at, min(command.checked_at, at) - CLOCK_MARGIN, queued)
        if not t.changed:
            # A silence that began after the check was staged (or a deadline this replica's
            # clock has not reached yet): the next check waits until it can judge it.
            again = t.judge_after or state.next_deadline
            await repository.check_not_before(uow.session, [state.saga_id], again + CLOCK_MARGIN if again else None)
            return
        with structlog.contextvars.bound_contextvars(subject=state.subject):
            await self._commit_transition(uow, state, t, at, envelope)

    async def _queued(self, participants: set[str]) -> dict[str, int]:
        """Of ``participants``, those whose queue holds messages not yet taken, and how many."""
        if self.backlog is None or not participants:
            return {}
        counts = {p: await self.backlog(p) for p in sorted(participants)}
        return {p: n for p, n in counts.items() if n}

    async def retry_compensation(self, uow: UnitOfWork, saga_id: uuid.UUID, step: str, actor: str) -> SagaState:
        return await self._operator_action(
            uow, saga_id, "retry_compensation", lambda state, at: self.engine(state).retry_compensation(state, step, at, actor)
        )

    async def resolve(self, uow: UnitOfWork, saga_id: uuid.UUID, reason: str, actor: str) -> SagaState:
        return await self._operator_action(
            uow, saga_id, "resolve", lambda state, at: self.engine(state).resolve(state, reason, at, actor)
        )

    async def pause(self, uow: UnitOfWork, saga_id: uuid.UUID, reason: str, actor: str) -> SagaState:
        return await self._operator_action(
            uow, saga_id, "pause", lambda state, at: self.engine(state).pause(state, at, actor, reason)
        )

    async def resume(self, uow: UnitOfWork, saga_id: uuid.UUID, actor: str) -> SagaState:
        return await self._operator_action(uow, saga_id, "resume", lambda state, at: self.engine(state).resume(state, at, actor))

    async def _operator_action(self, uow: UnitOfWork, saga_id: uuid.UUID, action: str, transition) -> SagaState:
        """An operator's action, as a span in the saga's trace linked to the request that asked for it."""
        saga_trace = (await repository.trace_contexts(uow.session, [saga_id])).get(saga_id) if tracing.enabled() else None
        attributes = {"saga.id": str(saga_id), "saga.operator_action": action}
        with tracing.within(f"operator {action}", saga_trace, attributes=attributes):
            state = await repository.load(uow.session, saga_id)
            if state is None:
                raise LookupError(f"no saga {saga_id}")
            at = now()
            t = transition(state, at)
            await self._commit_transition(uow, state, t, at, None)
            return t.state

    async def _commit_transition(
        self, uow: UnitOfWork, before: SagaState, t: Transition, at: datetime, cause: Envelope | None
    ) -> None:
        if t.changed:
            await repository.save(uow.session, t.state)
        for entry in t.history:
            if entry.event == HistoryEvent.REPLY_IGNORED:
                log.info("reply_ignored", step=entry.step, detail=entry.detail)
            elif entry.event == HistoryEvent.REPLY_REFUSED:
                claimed = cause.sender if cause else None
                causation = str(cause.causation_id) if cause and cause.causation_id else None
                log.warning("reply_refused", step=entry.step, detail=entry.detail, claimed_sender=claimed, causation_id=causation)
                metrics.refused(ORCHESTRATOR, "reply")
        self._observe(before, t, at)
        await self._stage(uow, t, at, cause, before.status)

    async def _stage(
        self, uow: UnitOfWork, t: Transition, at: datetime, cause: Envelope | None, before: SagaStatus | None
    ) -> None:
        await repository.record(uow.session, t.state.saga_id, t.history, at, cause.message_id if cause else None)
        reports_to = self.registry.engine_for(t.state).definition.reports_to
        if reports_to is not None and t.state.status != before and (before is not None or t.state.status != SagaStatus.RUNNING):
            # The initiator keeps the status of its sagas (an order lists them) from these. It
            # recorded the saga as running when it asked for it, so a start is not news.
            change = c.SagaStatusChanged(
                saga_id=t.state.saga_id,
                definition=t.state.definition,
                subject=t.state.subject,
                status=t.state.status,
                at=t.state.updated_at,
            )
            await uow.send(change, queue(reports_to), saga_id=t.state.saga_id, correlation_id=t.state.saga_id, causation=cause)
        outgoing = t.outgoing
        if t.state.paused_at is not None:
            # A paused saga sends no command (resuming sends what is due); what is not a
            # command to a participant (an escalation, a notice, a settlement) still goes.
            outgoing = [a for a in outgoing if not (isinstance(a, Send) and a.expects_reply)]
        for out in (staged(t.state, action) for action in outgoing):
            await uow.send(
                out.message,
                out.destination,
                saga_id=t.state.saga_id,
                correlation_id=t.state.saga_id,
                causation=cause,
                reply_to=ORCHESTRATOR_REPLIES if out.expects_reply else None,
                message_id=out.message_id,
                step=out.step if out.attempt else None,
                attempt=out.attempt,
            )
            log.info("command_staged", step=out.step, command=out.message.message_type(), destination=out.destination)

    @staticmethod
    def _observe(before: SagaState, t: Transition, at: datetime) -> None:
        if before.status != t.state.status and t.state.status in FINAL_STATUSES:
            metrics.saga_event(t.state.status)
            log.info("saga_finished", status=t.state.status, failed_step=t.state.failed_step)
        for old, new in zip(before.steps, t.state.steps, strict=True):
            if old.status == StepStatus.RUNNING and new.status != StepStatus.RUNNING and new.started_at:
                metrics.step_finished(new.name, new.status, (at - new.started_at).total_seconds())


async def stage_deadline_checks(
    sessions: async_sessionmaker[AsyncSession], sender: str, runs: Iterable[tuple[str, int]] | None = None
) -> int:
    """One pass of the deadline worker: a :class:`~contracts.messages.CheckSagaDeadlines` for
    every saga whose deadline passed, into the saga's group of ``orchestrator-replies``,
    through the outbox. Returns how many were staged.

    The worker judges nothing itself: what it saw or did not see of the replies (another
    replica may hold one, be retrying it, or have died with it) decides no outcome. SKIP
    LOCKED lets several orchestrators stage side by side, each saga's check once. ``runs``:
    the (definition, version)s this replica runs; sagas of others are left to a replica that does."""
    staged = 0
    while True:
        at = now()
        async with UnitOfWork(sessions, sender) as uow:
            due = await repository.due_for_check(uow.session, at, CLOCK_MARGIN, CHECK_BATCH, runs)
            traces = await repository.trace_contexts(uow.session, due) if tracing.enabled() else {}
            for saga_id in due:
                # No message caused it: the check is a span of the saga's own trace.
                with tracing.within("deadline check", traces.get(saga_id), attributes={"saga.id": str(saga_id)}):
                    await uow.send(
                        c.CheckSagaDeadlines(checked_at=at), queue(ORCHESTRATOR_REPLIES), saga_id=saga_id, correlation_id=saga_id
                    )
            await repository.check_not_before(uow.session, due, at + CHECK_AGAIN_AFTER)
            await uow.commit()
        staged += len(due)
        if len(due) < CHECK_BATCH:
            return staged
