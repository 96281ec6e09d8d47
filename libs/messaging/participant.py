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

import json
import uuid
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import text

from .contracts import REGISTRY, StepSettled
from .envelope import Envelope, MalformedMessage, Message
from .uow import UnitOfWork

log = structlog.get_logger("participant")

APPLIED, REFUSED, COMPENSATED, SETTLED = "applied", "refused", "compensated", "settled"

_INSERT = text(
    "INSERT INTO saga_step_guard (saga_id, step, state) VALUES (:saga_id, :step, :state) "
    "ON CONFLICT DO NOTHING RETURNING state"
)
_LOCK = text("SELECT state, result FROM saga_step_guard WHERE saga_id = :saga_id AND step = :step FOR UPDATE")
_SET = text(
    "UPDATE saga_step_guard SET state = :state, result = CAST(:result AS jsonb), updated_at = now() "
    "WHERE saga_id = :saga_id AND step = :step"
)

Refusals = tuple[type[Exception], ...]


def _stored(reply: Message, undone: bool = False) -> str:
    """The reply to give again; ``undone`` records that a compensation really undid an effect."""
    return json.dumps({"type": reply.message_type(), "payload": reply.model_dump(mode="json"), "undone": undone})


def _restore(result: dict) -> Message:
    return REGISTRY.get(result["type"]).model_validate(result["payload"])


async def _claim(uow: UnitOfWork, saga_id: uuid.UUID, step: str, state: str) -> tuple[str | None, dict | None]:
    """Insert the guard row in ``state``; if one exists, lock it and return what it holds."""
    params = {"saga_id": saga_id, "step": step}
    if (await uow.session.execute(_INSERT, params | {"state": state})).first() is not None:
        return None, None
    row = (await uow.session.execute(_LOCK, params)).one()
    return row.state, row.result


async def _set(uow: UnitOfWork, saga_id: uuid.UUID, step: str, state: str, reply: Message, undone: bool = False) -> None:
    await uow.session.execute(_SET, {"saga_id": saga_id, "step": step, "state": state,
                                     "result": _stored(reply, undone)})


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
            async with uow.session.begin_nested():
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
            async with uow.session.begin_nested():
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


def settle(step: str):
    """The handler of SettleStep for ``step``: record that the step was settled by hand, so
    that a compensation arriving later does nothing, and say whether one already ran."""

    async def handle(uow: UnitOfWork, request: Envelope, command) -> None:
        saga_id = _saga_id(request, step)
        prior, result = await _claim(uow, saga_id, step, SETTLED)
        already = prior == COMPENSATED and bool((result or {}).get("undone"))
        if prior in (APPLIED, REFUSED) or (prior == COMPENSATED and not already):
            reply = StepSettled(order_id=command.order_id, already_compensated=False)
            await _set(uow, saga_id, step, SETTLED, reply)
        else:
            reply = StepSettled(order_id=command.order_id, already_compensated=already)
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
