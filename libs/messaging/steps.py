"""A saga step's contract, declared once and read by both sides (Eventuate's participant proxy).

The saga definition that invokes the step takes its name, its participant's queue, its command
and replies, and its compensation from the contract; the participant that does the step
registers its handlers from it and keys its step guard by its name
(:mod:`messaging.participant`). So a step's name is written once, and the two sides cannot
disagree on who answers what.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .envelope import Message


@dataclass(frozen=True)
class Call:
    """A command and the replies that answer it."""

    command: type[Message]
    success: type[Message]
    failure: type[Message] | None = None
    """The business refusal, if the participant may refuse."""

    @property
    def messages(self) -> tuple[type[Message], ...]:
        return tuple(m for m in (self.command, self.success, self.failure) if m is not None)


@dataclass(frozen=True)
class StepContract:
    """One participant's saga step: who does it, the command that asks for it and its replies,
    and the command that undoes it and its replies."""

    name: str
    participant: str
    """Logical name of the participant's command queue."""
    action: Call | None
    """None: the saga's initiator does the step in the transaction that starts the saga."""
    compensation: Call | None = None
    formerly: tuple[str, ...] = ()
    """Names the step had before. A saga keeps the step names it started with to its end, and
    the participant's step guard is keyed by them, so a renamed step answers to its old names
    until no saga started under them can still send a command (see docs/design.md)."""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.formerly)

    @property
    def calls(self) -> tuple[Call, ...]:
        return tuple(c for c in (self.action, self.compensation) if c is not None)

    @property
    def commands(self) -> tuple[type[Message], ...]:
        """The commands the participant must handle for this step."""
        return tuple(c.command for c in self.calls)


def by_name(steps: Iterable[StepContract]) -> dict[str, StepContract]:
    """Each step under its name and former names; two steps may not share one."""
    named: dict[str, StepContract] = {}
    for step in steps:
        for name in step.names:
            if named.setdefault(name, step) is not step:
                raise ValueError(f"steps {named[name].name} and {step.name} are both called {name}")
    return named
