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
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from .envelope import Envelope, MalformedMessage, Message
from .guard import APPLIED, COMPENSATED, REFUSED, SETTLED
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
    step: str,
    apply: Callable[[], Awaitable[Message]],
    refuse: Callable[[str], Message],
    refusals: Refusals,
) -> Message:
    """Run a step's forward action once per saga and reply to ``request``.

    ``apply`` performs the local effect and returns the success reply; if it raises one of
    ``refusals`` its partial effects are rolled back (savepoint) and ``refuse(reason)`` is
    the reply.
    """
    saga_id = _saga_id(request, step)
    prior, result = await _claim(uow, saga_id, step, APPLIED)
    if prior is None:
        try:
            async with uow.savepoint():
                reply = await apply()
            state = APPLIED
        except refusals as error:
            reply, state = refuse(_reason(error)), REFUSED
        await _set(uow, saga_id, step, state, reply)
        log.info("step_forward", step=step, outcome=state)
    elif prior in (COMPENSATED, SETTLED):
        # The compensation (or an operator's settlement) overtook this command. Applying it
        # now would leave an effect that nothing will ever undo, so it is refused.
        reply = refuse("compensated before it was applied" if prior == COMPENSATED else "settled by hand")
        log.info("step_forward_refused_after_compensation", step=step, prior=prior)
    else:
        # A resend (same saga, step and attempt under a new message id) or a redelivery:
        # the step already ran, so it gets the same answer and no second effect.
        reply = _restore(result)
        log.info("step_forward_repeated", step=step, outcome=prior, attempt=request.attempt)
    await uow.reply(request, reply)
    return reply


async def compensate(
    uow: UnitOfWork,
    request: Envelope,
    *,
    step: str,
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
    saga_id = _saga_id(request, step)
    prior, result = await _claim(uow, saga_id, step, COMPENSATED)
    if prior is None or prior == REFUSED:
        reply = done()
        await _set(uow, saga_id, step, COMPENSATED, reply)
        log.info("step_compensated_nothing_to_undo", step=step, prior=prior)
    elif prior == COMPENSATED:
        reply = _restore(result)
        log.info("step_compensation_repeated", step=step)
    elif prior == SETTLED:
        # A person already put this step right by hand: a late or redriven compensation
        # must not undo it a second time.
        reply = done()
        log.warning("step_compensation_after_settlement_ignored", step=step)
    else:
        try:
            async with uow.savepoint():
                reply = await undo()
            await _set(uow, saga_id, step, COMPENSATED, reply, undone=True)
            log.info("step_compensated", step=step)
        except refusals as error:
            if refuse is None:
                raise
            reply = refuse(_reason(error))
            log.warning("step_compensation_refused", step=step, reason=_reason(error))
    await uow.reply(request, reply)
    return reply


def settle(step: str, settled: Callable[[Any, bool], Message]) -> Callable[[UnitOfWork, Envelope, Any], Awaitable[None]]:
    """The handler of a "settle this step" command for ``step``: record that the step was
    settled by hand, so that a compensation arriving later does nothing, and reply
    ``settled(command, already_compensated)``, which says whether one had already run."""

    async def handle(uow: UnitOfWork, request: Envelope, command: Any) -> None:
        saga_id = _saga_id(request, step)
        prior, result = await _claim(uow, saga_id, step, SETTLED)
        already = prior == COMPENSATED and bool((result or {}).get("undone"))
        if prior in (APPLIED, REFUSED) or (prior == COMPENSATED and not already):
            reply = settled(command, False)
            await _set(uow, saga_id, step, SETTLED, reply)
        else:
            reply = settled(command, already)
            if prior is None:
                await _set(uow, saga_id, step, SETTLED, reply)
        (log.warning if already else log.info)("step_settled_by_hand", step=step, already_compensated=already)
        await uow.reply(request, reply)

    return handle


def _reason(error: Exception) -> str:
    """A refusal's reason as replies carry it: at most 500 characters."""
    text = str(error)
    return text if len(text) <= 500 else text[:497] + "..."


def _saga_id(request: Envelope, step: str) -> uuid.UUID:
    """The saga of a command for ``step``; a command naming another step was misrouted."""
    if request.saga_id is None:
        raise MalformedMessage(f"{request.message_type} {request.message_id} carries no saga_id")
    if request.step is not None and request.step != step:
        raise MalformedMessage(f"{request.message_type} {request.message_id} names step {request.step}, not {step}")
    return request.saga_id
