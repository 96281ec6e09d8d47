"""What this system's saga definitions share: steps made from its step contracts
(``contracts/steps.py``), to which a definition adds how each command is built from the saga's
data, what to keep of the replies and what to forget; the timings every saga here has; and the
builders of commands that need only the order."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from contracts import messages as c
from messaging.envelope import Message
from messaging.steps import Call, StepContract

from .engine import Data, Invoke, Local, Step

Build = Callable[[Data], Message]

LEAST_TIME = timedelta(seconds=5)
"""Each step's least time (``SagaDefinition.step_timeout``), which also paces compensation retries."""
RESEND_AFTER = timedelta(seconds=3)
"""Silence after which a step's command is sent again (``SagaDefinition.resend_after``)."""
BUDGET = timedelta(seconds=30)
"""Time from the start within which a saga should end (``SagaDefinition.budget``).

Every saga here declares these three; ``ORCHESTRATOR_TIMEOUTS__*`` override them."""


def by_order(command: type[c.Command]) -> Build:
    """A builder of ``command`` about the saga's order, with nothing else."""
    return lambda data: command(order_id=data["order_id"])


def invoke(
    contract: StepContract,
    build: Build,
    *,
    undo: Build | None = None,
    keep: tuple[str, ...] = (),
    **step: Any,
) -> Step:
    """A step that sends ``contract``'s command, built by ``build``; ``undo`` builds its
    compensation, which the contract must have (and then the definition must build)."""
    assert contract.action is not None, f"{contract.name} is done by the saga's initiator: use local()"
    return Step(
        contract.name,
        participant=contract.participant,
        action=_invoke(contract.action, build, keep),
        compensation=_compensation(contract, undo),
        formerly=contract.formerly,
        **step,
    )


def local(contract: StepContract, why: str, *, undo: Build | None = None, **step: Any) -> Step:
    """A step the saga's initiator does in the transaction that starts the saga."""
    assert contract.action is None, f"{contract.name} has a command: use invoke()"
    return Step(
        contract.name,
        participant=contract.participant,
        action=Local(why),
        compensation=_compensation(contract, undo),
        formerly=contract.formerly,
        **step,
    )


def _compensation(contract: StepContract, undo: Build | None) -> Invoke | None:
    if (contract.compensation is None) != (undo is None):
        raise ValueError(f"{contract.name}: a compensation is built exactly when the contract has one")
    return None if contract.compensation is None or undo is None else _invoke(contract.compensation, undo, ())


def _invoke(call: Call, build: Build, keep: tuple[str, ...]) -> Invoke:
    return Invoke(call.command, build, success=call.success, failure=call.failure, keep=keep)
