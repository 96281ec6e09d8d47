"""The participant side of a saga step: idempotent, and safe against reordering.

Each participant records, per (saga, step), whether it applied the step, refused it, or
compensated it. That record is what makes the step:

* idempotent: a repeated forward command (a retry with a new message id) gets the same
  reply again and no second effect;
* safe when a compensation overtakes its forward command: the compensation leaves a
  ``compensated`` tombstone, so the late forward command is refused and nothing stays
  applied.

Domain code raises its own exceptions; the handler names which of them are business
refusals, and they become failure replies here, so domain code never touches messaging.

A step is named by its contract (:class:`~messaging.steps.StepContract`), never by a string
in the handler; :func:`handlers` registers a participant's handlers from the steps it owns,
with one SettleStep handler for all of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from . import erasure
from .bus import Handler, Handlers
from .envelope import Envelope, MalformedMessage, Message
from .guard import APPLIED, COMPENSATED, REFUSED, SETTLED
from .steps import StepContract, by_name
from .uow import UnitOfWork

log = structlog.get_logger("participant")

Refusals = tuple[type[Exception], ...]


def _stored(reply: Message, undone: bool = False) -> dict[str, Any]:
    """The reply to give again; ``undone`` records that a compensation really undid an effect."""
    return {"type": reply.message_type(), "payload": reply.model_dump(mode="json"), "undone": undone}


def _restore(result: dict[str, Any] | None) -> Message:
    assert result is not None, "a settled step has its reply"
    return Message.defined(result["type"]).model_validate(result["payload"])


async def _claim(uow: UnitOfWork, saga_id: uuid.UUID, step: str, state: str) -> tuple[str | None, dict[str, Any] | None]:
    return await uow.guard.claim(saga_id, step, state)


async def _set(uow: UnitOfWork, saga_id: uuid.UUID, step: str, state: str, reply: Message, undone: bool = False) -> None:
    await uow.guard.settle(saga_id, step, state, _stored(reply, undone))


async def forward(
    uow: UnitOfWork,
    request: Envelope,
    *,
    step: StepContract,
    apply: Callable[[], Awaitable[Message]],
    refuse: Callable[[str], Message],
    refusals: Refusals,
) -> Message:
    """Run a step's forward action once per saga and reply to ``request``.

    ``apply`` performs the local effect and returns the success reply; if it raises one of
    ``refusals`` its partial effects are rolled back (savepoint) and ``refuse(reason)`` is
    the reply.
    """
    saga_id, name = _identity(request, step)
    prior, result = await _claim(uow, saga_id, name, APPLIED)
    if prior is None:
        try:
            async with uow.savepoint():
                reply = await apply()
            state = APPLIED
        except refusals as error:
            reply, state = refuse(_reason(error)), REFUSED
        await _set(uow, saga_id, name, state, reply)
        log.info("step_forward", step=name, outcome=state)
    elif prior in (COMPENSATED, SETTLED):
        # The compensation (or an operator's settlement) overtook this command. Applying it
        # now would leave an effect that nothing will ever undo, so it is refused.
        reply = refuse("compensated before it was applied" if prior == COMPENSATED else "settled by hand")
        log.info("step_forward_refused_after_compensation", step=name, prior=prior)
    else:
        # A resend (same saga, step and attempt under a new message id) or a redelivery:
        # the step already ran, so it gets the same answer and no second effect.
        reply = _restore(result)
        log.info("step_forward_repeated", step=name, outcome=prior, attempt=request.attempt)
    await uow.reply(request, reply)
    return reply


async def compensate(
    uow: UnitOfWork,
    request: Envelope,
    *,
    step: StepContract,
    undo: Callable[[], Awaitable[Message]],
    done: Callable[[], Message],
    refuse: Callable[[str], Message] | None = None,
    refusals: Refusals = (),
) -> Message:
    """Undo a step's effect once per saga and reply to ``request``.

    If the step never ran (or was refused), nothing is undone but a tombstone is left so a
    late forward command is refused. If ``undo`` raises one of ``refusals`` the step stays
    applied and ``refuse(reason)`` is the reply, so the compensation can be retried later.
    """
    saga_id, name = _identity(request, step)
    prior, result = await _claim(uow, saga_id, name, COMPENSATED)
    if prior is None or prior == REFUSED:
        reply = done()
        await _set(uow, saga_id, name, COMPENSATED, reply)
        log.info("step_compensated_nothing_to_undo", step=name, prior=prior)
    elif prior == COMPENSATED:
        reply = _restore(result)
        log.info("step_compensation_repeated", step=name)
    elif prior == SETTLED:
        # A person already put this step right by hand: a late or redriven compensation
        # must not undo it a second time.
        reply = done()
        log.warning("step_compensation_after_settlement_ignored", step=name)
    else:
        try:
            async with uow.savepoint():
                reply = await undo()
            await _set(uow, saga_id, name, COMPENSATED, reply, undone=True)
            log.info("step_compensated", step=name)
        except refusals as error:
            if refuse is None:
                raise
            reply = refuse(_reason(error))
            log.warning("step_compensation_refused", step=name, reason=_reason(error))
    await uow.reply(request, reply)
    return reply


def settle(
    steps: Sequence[StepContract], settled: Callable[[Any, bool], Message]
) -> Callable[[UnitOfWork, Envelope, Any], Awaitable[None]]:
    """The handler of a "settle this step" command for any of ``steps`` (the envelope names
    which): record that the step was settled by hand, so that a compensation arriving later
    does nothing, and reply ``settled(command, already_compensated)``, which says whether one
    had already run."""
    named = by_name(steps)

    async def handle(uow: UnitOfWork, request: Envelope, command: Any) -> None:
        if request.step not in named:
            raise MalformedMessage(f"{request.message_type} {request.message_id} names step {request.step}, not one of ours")
        saga_id, name = _identity(request, named[request.step])
        prior, result = await _claim(uow, saga_id, name, SETTLED)
        already = prior == COMPENSATED and bool((result or {}).get("undone"))
        if prior in (APPLIED, REFUSED) or (prior == COMPENSATED and not already):
            reply = settled(command, False)
            await _set(uow, saga_id, name, SETTLED, reply)
        else:
            reply = settled(command, already)
            if prior is None:
                await _set(uow, saga_id, name, SETTLED, reply)
        (log.warning if already else log.info)("step_settled_by_hand", step=name, already_compensated=already)
        await uow.reply(request, reply)

    return handle


def handlers(
    steps: Sequence[StepContract],
    handle: Mapping[type[Message], Handler],
    *,
    settle_with: tuple[type[Message], Callable[[Any, bool], Message]],
    erase_with: tuple[type[Message], Callable[[Any, int], Message]],
    personal_data: Sequence[erasure.PersonalData] = (),
) -> Handlers:
    """A participant's handlers: ``handle`` for each command of the ``steps`` it owns (and any
    other message it receives), the settlement command ``settle_with[0]`` answered by
    ``settle_with[1]`` for every one of those steps, and the erasure request ``erase_with[0]``,
    which erases the ``personal_data`` the participant keeps of a customer (every participant
    answers it, keeping something or not) and is answered by ``erase_with[1]``. A step command
    without a handler is an error here, at import, rather than a dead letter later."""
    missing = [f"{command.__name__} ({step.name})" for step in steps for command in step.commands if command not in handle]
    if missing:
        raise ValueError(f"no handler for {', '.join(missing)}")
    command, settled = settle_with
    request, erased = erase_with
    return {**handle, command: settle(steps, settled), request: erasure.handler(personal_data, erased)}


def _reason(error: Exception) -> str:
    """A refusal's reason as replies carry it: at most 500 characters."""
    text = str(error)
    return text if len(text) <= 500 else text[:497] + "..."


def _identity(request: Envelope, step: StepContract) -> tuple[uuid.UUID, str]:
    """The saga of a command for ``step`` and the name its guard row has: the one the envelope
    gives (a saga keeps the names it started with, so it may be a former one), else the step's.
    A command naming another step was misrouted."""
    if request.saga_id is None:
        raise MalformedMessage(f"{request.message_type} {request.message_id} carries no saga_id")
    if request.step is not None and request.step not in step.names:
        raise MalformedMessage(f"{request.message_type} {request.message_id} names step {request.step}, not {step.name}")
    return request.saga_id, request.step or step.name
