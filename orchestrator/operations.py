"""Operator actions: the one code path behind the saga API's operator endpoints (and so
``sagactl``) and the console.

Each action commits the saga's transition, with the actor in its history, before it tidies
the escalation queue. A refused action raises ``LookupError`` (no such saga) or
``ValueError`` (not allowed in the saga's state, or not a dead-letter queue); callers turn
them into their own answers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from contracts.topology import SAGA_ESCALATIONS
from messaging.service import Runtime
from messaging.uow import UnitOfWork

from . import dead_letters, repository
from .engine import HistoryEntry, HistoryEvent, SagaState, StepStatus
from .handlers import Orchestrator

log = structlog.get_logger("operations", service="orchestrator")


async def retry_compensation(rt: Runtime, orchestrator: Orchestrator, saga_id: uuid.UUID, step: str, actor: str) -> SagaState:
    """Send a ``compensation_failed`` step's compensation again, then drop its older escalations."""
    state = await _act(rt, lambda uow: orchestrator.retry_compensation(uow, saga_id, step, actor))
    await _discard(rt, _escalations(state, step))
    return state


async def resolve(rt: Runtime, orchestrator: Orchestrator, saga_id: uuid.UUID, reason: str, actor: str) -> SagaState:
    """Close a saga whose effects a person put right by hand, then drop its escalations."""
    state = await _act(rt, lambda uow: orchestrator.resolve(uow, saga_id, reason, actor))
    await _discard(rt, _escalations(state, None))
    return state


async def redrive(rt: Runtime, orchestrator: Orchestrator, queue: str, actor: str) -> dict:
    """Move a ``-dlq`` queue's messages back to their queue, or retry every escalated
    compensation (each retry lands in its saga's history under ``actor``)."""
    if queue != SAGA_ESCALATIONS:
        outcome = await dead_letters.redrive_queue(rt.broker, queue)
        await _record_redrive(rt, orchestrator, queue, outcome["messages"], actor)
        return outcome

    async def retry(saga_id: uuid.UUID, step: str) -> tuple[str, set[str]]:
        try:
            state = await _act(rt, lambda uow: orchestrator.retry_compensation(uow, saga_id, step, actor))
            return "compensation retried", _escalations(state, step)
        except (LookupError, ValueError) as error:
            return f"skipped: {error}", set()

    return await dead_letters.redrive_escalations(rt.broker, retry)


async def pause(rt: Runtime, orchestrator: Orchestrator, saga_id: uuid.UUID, reason: str, actor: str) -> SagaState:
    """Pause one saga: it sends no further command and its deadlines wait (recorded in its history)."""
    return await _act(rt, lambda uow: orchestrator.pause(uow, saga_id, reason, actor))


async def resume(rt: Runtime, orchestrator: Orchestrator, saga_id: uuid.UUID, actor: str) -> SagaState:
    """Resume a paused saga: what is due is sent, its budget extended by the time paused."""
    return await _act(rt, lambda uow: orchestrator.resume(uow, saga_id, actor))


async def pause_definition(rt: Runtime, orchestrator: Orchestrator, definition: str, reason: str, actor: str) -> bool:
    """Hold every new saga of ``definition`` at its start from now on (not refused: started,
    recorded, its first command not sent) until it is resumed; False if it was paused already."""
    if definition not in orchestrator.registry.engines:
        raise LookupError(f"no saga definition {definition!r}")
    async with UnitOfWork(rt.sessions, rt.name) as uow:
        paused = await repository.pause_definition(uow.session, definition, datetime.now(UTC), actor, reason)
        await uow.commit()
    log.warning("definition_paused", definition=definition, actor=actor, reason=reason)
    return paused


async def resume_definition(rt: Runtime, orchestrator: Orchestrator, definition: str, actor: str) -> int:
    """New sagas of ``definition`` start again, and those held meanwhile are resumed, oldest
    first, each in a transaction of its own; returns how many were resumed."""
    if definition not in orchestrator.registry.engines:
        raise LookupError(f"no saga definition {definition!r}")
    async with UnitOfWork(rt.sessions, rt.name) as uow:
        await repository.resume_definition(uow.session, definition)
        await uow.commit()
    resumed = 0
    while True:
        async with rt.sessions() as session:
            held = await repository.held(session, definition, BULK_BOUND)
        for saga_id in held:
            try:
                await _act(rt, lambda uow, saga_id=saga_id: orchestrator.resume(uow, saga_id, f"{actor} (definition resumed)"))
                resumed += 1
            except ValueError:  # resumed meanwhile by another request
                continue
        if len(held) < BULK_BOUND:
            break
    log.warning("definition_resumed", definition=definition, actor=actor, resumed=resumed)
    return resumed


BULK_BOUND = 100
"""Sagas one bulk request acts on at most; sagactl asks again until none match."""
RETRYABLE = (StepStatus.COMPENSATION_FAILED, StepStatus.ESCALATED)


@dataclass(frozen=True)
class Selection:
    """Which sagas a bulk action is for: every given field must match."""

    status: str | None = None
    definition: str | None = None
    failed_step: str | None = None
    older_than: datetime | None = None
    saga_ids: tuple[uuid.UUID, ...] | None = None
    """Only these sagas (the ids a dry run returned)."""

    def empty(self) -> bool:
        """Whether it selects every saga there is."""
        return not (self.status or self.definition or self.failed_step or self.older_than or self.saga_ids)


class EmptySelection(ValueError):
    """A live bulk action with no filter: it would act on every saga there is."""


async def bulk(
    rt: Runtime,
    orchestrator: Orchestrator,
    action: str,
    selection: Selection,
    *,
    actor: str,
    reason: str = "",
    dry_run: bool = True,
    limit: int = BULK_BOUND,
) -> dict:
    """``retry`` (every failed compensation or escalated step of each saga) or ``resolve``, for
    the sagas ``selection`` matches, oldest first, at most ``limit``. A dry run only lists
    them. Each saga is acted on in its own transaction, its history recording the action and
    ``actor`` ("<actor> (bulk)"), so one that cannot be acted on is reported and the others go on.
    A live action needs a filter, or the ids its dry run returned (:class:`EmptySelection`)."""
    if not dry_run and selection.empty():
        raise EmptySelection("a bulk action needs a filter (status, definition, failed step, age) or saga ids")
    async with rt.sessions() as session:
        matched = await repository.listing(
            session,
            status=selection.status,
            definition=selection.definition,
            failed_step=selection.failed_step,
            older_than=selection.older_than,
            saga_ids=selection.saga_ids,
            limit=min(limit, BULK_BOUND),
            oldest_first=True,
        )
    if action == "retry":
        matched = [s for s in matched if any(step.status in RETRYABLE for step in s.steps)]
    outcomes = []
    for state in matched:
        if dry_run:
            outcomes.append({"saga_id": state.saga_id, "status": state.status, "outcome": "would " + action})
            continue
        try:
            if action == "retry":
                for step in [s.name for s in state.steps if s.status in RETRYABLE]:
                    state = await retry_compensation(rt, orchestrator, state.saga_id, step, f"{actor} (bulk)")
                outcome = "retried"
            else:
                state = await resolve(rt, orchestrator, state.saga_id, reason, f"{actor} (bulk)")
                outcome = "resolved"
        except (LookupError, ValueError) as error:
            outcome = f"skipped: {error}"
        log.info("bulk_action", action=action, saga_id=str(state.saga_id), outcome=outcome, actor=actor)
        outcomes.append({"saga_id": state.saga_id, "status": state.status, "outcome": outcome})
    return {"action": action, "dry_run": dry_run, "bound": min(limit, BULK_BOUND), "sagas": outcomes}


async def _record_redrive(rt: Runtime, orchestrator: Orchestrator, queue: str, messages: list[dict], actor: str) -> None:
    """Note in each saga's history that a person sent its dead-lettered message back: not a
    transition (the message's handling will be one), but who did what to the saga, and when."""
    steps = orchestrator.registry.step_of_message_types()
    at = datetime.now(UTC)
    async with UnitOfWork(rt.sessions, rt.name) as uow:
        known = await repository.existing(uow.session, {uuid.UUID(m["saga_id"]) for m in messages})
        for m in messages:
            if uuid.UUID(m["saga_id"]) in known:
                await repository.record(
                    uow.session,
                    uuid.UUID(m["saga_id"]),
                    [
                        HistoryEntry(
                            HistoryEvent.OPERATOR_REDRIVE,
                            steps.get(m["message_type"]),
                            f"by {actor}: {m['message_type']} from {queue} back to {queue.removesuffix('-dlq')}",
                        )
                    ],
                    at,
                )
        await uow.commit()


async def _act(rt: Runtime, action) -> SagaState:
    async with UnitOfWork(rt.sessions, rt.name) as uow:
        state = await action(uow)
        await uow.commit()
    return state


def _escalations(state: SagaState, step: str | None) -> set[str]:
    """Ids of the escalations raised for ``step`` (every step if None) before an operator acted;
    one a retry raises by failing again comes later, under a new id, and stays."""
    return {i for s in state.steps if step in (None, s.name) for i in s.escalation_ids}


async def _discard(rt: Runtime, escalation_ids: set[str]) -> None:
    """Tidy the escalation queue after an action that has committed: best effort, since
    failing here must not make a done action look undone (a stale escalation is skipped by
    the next redrive)."""
    try:
        await dead_letters.discard_escalations(rt.broker, escalation_ids)
    except Exception:  # noqa: BLE001
        log.warning("escalation_discard_failed", exc_info=True)
