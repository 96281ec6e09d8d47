"""Turning messages and deadlines into saga transitions, each in one local transaction:
lock the saga row, run the pure engine, save the new state and its history, and stage the
commands it decided on in the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import messages as c
from contracts.topology import ORCHESTRATOR_REPLIES
from messaging import metrics
from messaging.bus import Handlers
from messaging.envelope import Envelope, MalformedMessage, Message
from messaging.uow import UnitOfWork

from . import repository
from .engine import FINAL_STATUSES, SagaEngine, SagaRegistry, SagaState, SagaStatus, StepStatus, Transition

log = structlog.get_logger("orchestrator")
DEADLINE_RETRY = timedelta(seconds=30)
"""How long a saga whose deadline transition failed waits before the next try, so that it
does not stay first in line ahead of every other due saga."""


def now() -> datetime:
    return datetime.now(UTC)


class Orchestrator:
    """Runs every saga of a :class:`SagaRegistry`: a start command names its definition, and a
    reply goes to the saga its envelope names, then to that saga's definition."""

    def __init__(self, registry: SagaRegistry) -> None:
        self.registry = registry

    def handlers(self) -> Handlers:
        return {
            **{start: self.start for start in self.registry.starts()},
            c.SettleUnstartedSaga: self.settle_unstarted,
            c.StepSettled: self.on_settled,
            **{reply: self.on_reply for reply in self.registry.replies()},
        }

    def engine(self, state: SagaState) -> SagaEngine:
        return self.registry[state.definition]

    async def start(self, uow: UnitOfWork, envelope: Envelope, command: c.StartSaga) -> None:
        if envelope.saga_id is None:
            raise MalformedMessage(f"{command.message_type()} without saga_id")
        at = now()
        engine = self.registry[command.definition]
        t = engine.start(envelope.saga_id, command.model_dump(mode="json", exclude={"definition"}), at)
        if not await repository.add(uow.session, t.state):
            log.info("saga_already_started")
            return
        metrics.saga_event("started")
        await self._stage(uow, t, at, envelope, None)

    async def settle_unstarted(self, uow: UnitOfWork, envelope: Envelope, command: c.SettleUnstartedSaga) -> None:
        if envelope.saga_id is None:
            raise MalformedMessage("SettleUnstartedSaga without saga_id")
        at = now()
        t = self.registry["order"].settle_unstarted(envelope.saga_id, str(command.order_id), command.reason, at)
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
        t = self.engine(state).on_reply(state, reply, at, envelope.causation_id, envelope.attempt)
        await self._commit_transition(uow, state, t, at, envelope)

    async def on_deadline(self, uow: UnitOfWork, saga_id: uuid.UUID, cutoff: datetime | None = None) -> Transition | None:
        """Handle one saga's deadlines that passed by ``cutoff`` (default now), if it is still
        due and no other worker holds it; returns the transition, None if it was not due."""
        at = now()
        state = await repository.load_if_due(uow.session, saga_id, at)
        if state is None:
            return None
        t = self.engine(state).on_deadline(state, at, cutoff)
        if not t.changed:
            return t  # only silences not yet established: nothing to do before the replies are read
        with structlog.contextvars.bound_contextvars(saga_id=str(saga_id), subject=state.subject):
            await self._commit_transition(uow, state, t, at, None)
        return t

    async def retry_compensation(self, uow: UnitOfWork, saga_id: uuid.UUID, step: str, actor: str) -> SagaState:
        return await self._operator_action(
            uow, saga_id, lambda state, at: self.engine(state).retry_compensation(state, step, at, actor)
        )

    async def resolve(self, uow: UnitOfWork, saga_id: uuid.UUID, reason: str, actor: str) -> SagaState:
        return await self._operator_action(uow, saga_id, lambda state, at: self.engine(state).resolve(state, reason, at, actor))

    async def _operator_action(self, uow: UnitOfWork, saga_id: uuid.UUID, transition) -> SagaState:
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
            if entry.event == "reply_ignored":
                log.info("reply_ignored", step=entry.step, detail=entry.detail)
        self._observe(before, t, at)
        await self._stage(uow, t, at, cause, before.status)

    async def _stage(
        self, uow: UnitOfWork, t: Transition, at: datetime, cause: Envelope | None, before: SagaStatus | None
    ) -> None:
        await repository.record(uow.session, t.state.saga_id, t.history, at, cause.message_id if cause else None)
        reports_to = self.registry[t.state.definition].definition.reports_to
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
            await uow.send(
                change, f"queue:{reports_to}", saga_id=t.state.saga_id, correlation_id=t.state.saga_id, causation=cause
            )
        for out in t.outgoing:
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


async def fire_due_deadlines(
    sessions: async_sessionmaker[AsyncSession],
    orchestrator: Orchestrator,
    sender: str,
    read_until: Callable[[float], float] | None = None,
    waiting: dict[uuid.UUID, tuple[datetime, datetime]] | None = None,
) -> int:
    """One pass of the deadline worker; returns how many sagas it moved on.

    ``read_until(now)`` (epoch seconds) bounds the deadlines judged to those passed while
    every reply that could have answered them has been read. Each saga is handled in its own
    transaction, so one whose transition fails (logged, retried on the next pass) holds up no
    other; SKIP LOCKED makes several orchestrator instances share the work with each expiry
    handled once. ``waiting``, kept by the caller from pass to pass, remembers the sagas whose
    silence could not be judged yet (their deadline, and the cutoff the judgment needs), so
    that they cost nothing until the replies have been read that far or the deadline moves.
    """
    at = now()
    cutoff = datetime.fromtimestamp(read_until(at.timestamp()), UTC) if read_until else at
    waiting = {} if waiting is None else waiting
    async with sessions() as session:
        # Resends are due at once; judgments only up to the cutoff, and the engine tells them
        # apart, so the list is wide enough that waiting judgments never crowd resends out.
        due = await repository.due_deadlines(session, at, limit=500)
    seen = {saga_id for saga_id, _ in due}
    for saga_id in [s for s in waiting if s not in seen]:
        del waiting[saga_id]  # answered, or no longer due
    handled = 0
    for saga_id, deadline in due:
        parked = waiting.get(saga_id)
        if parked is not None and parked[0] == deadline and parked[1] > cutoff:
            continue
        try:
            async with UnitOfWork(sessions, sender) as uow:
                t = await orchestrator.on_deadline(uow, saga_id, cutoff)
                await uow.commit()
        except Exception:
            log.exception("deadline_failed", saga_id=str(saga_id))
            await repository.postpone(sessions, saga_id, DEADLINE_RETRY)
            continue
        if t is not None and t.changed:
            handled += 1
            waiting.pop(saga_id, None)
        elif t is not None and t.judge_after is not None:
            waiting[saga_id] = (deadline, t.judge_after)
    return handled
