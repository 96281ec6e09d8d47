"""Saga steps from this system's step contracts (``contracts/steps.py``): what a definition
adds to a contract is how to build each command from the saga's data, what to keep of the
replies, what to forget, and its timings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from messaging.envelope import Message
from messaging.steps import Call, StepContract

from .engine import Data, Invoke, Local, Step

Build = Callable[[Data], Message]


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
    return Invoke(call.command, build, success=call.success, failure=call.failure, keep=keep)  # type: ignore[arg-type]
