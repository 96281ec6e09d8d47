"""A saga definition as data: its steps top to bottom (each invokes a participant, or is done
by the saga's initiator), their compensations, the pivot and the timings. Nothing here knows
which system runs the saga: participants are named by their logical queue, commands are built
from the saga's data by the definition's own functions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from messaging.envelope import Message

Data = dict[str, Any]


@dataclass(frozen=True)
class Invoke:
    """Send ``build(saga data)`` to the step's participant and wait for one of the replies."""

    command: type[Message]
    build: Callable[[Data], Message]
    success: type[Message]
    failure: type[Message] | None = None
    """A business refusal; its ``reason`` is the saga's (or, after the pivot, the step's) error."""
    keep: tuple[str, ...] = ()
    """Fields of the success reply added to the saga's data, for later steps and compensations."""


@dataclass(frozen=True)
class Local:
    """A step done by whoever starts the saga, in the transaction that starts it."""

    why: str


@dataclass(frozen=True)
class Step:
    name: str
    participant: str
    """Logical name of the participant's command queue."""
    action: Invoke | Local
    compensation: Invoke | None = None
    timeout: timedelta | None = None
    """The least time the step is given before it has timed out (None: the definition's
    ``step_timeout``); it may get more from the saga's budget (:attr:`SagaDefinition.budget`).
    A compensation's retries are paced by it too."""
    resend_after: timedelta | None = None
    """Silence after which the command is sent again (None: the definition's ``resend_after``),
    doubling after each resend up to ``MAX_RESEND_INTERVAL``, as long as the budget lasts. A
    participant that restarts finds a resend at once, while the copy it had taken stays
    invisible for its queue's visibility timeout."""
    forget: tuple[str, ...] = ()
    """Saga data only this step's command needs, erased once the step has been answered."""
    formerly: tuple[str, ...] = ()
    """Names the step had before: a saga keeps the names it started with, so one started
    under a former name still runs this step under that name."""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.formerly)

    @property
    def invokes(self) -> tuple[Invoke, ...]:
        return tuple(i for i in (self.action, self.compensation) if isinstance(i, Invoke))


@dataclass(frozen=True)
class Notify:
    """A command sent when the saga ends, with no reply expected."""

    participant: str
    build: Callable[[Data], Message]


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    subject: str
    """The key of the saga's data naming what the saga is about (its subject), stored with the saga."""
    steps: tuple[Step, ...]
    start: type[Message] | None = None
    """The command that starts it: the orchestrator routes it here."""
    settles_unstarted: type[Message] | None = None
    """The command by which its initiator asks about a saga it requested and that may never
    have started: if it did not, the saga is recorded as one that could not start, what the
    initiator did is undone, and a person is told (:meth:`SagaEngine.settle_unstarted`)."""
    pivot: str | None = None
    """The step after which the saga only goes forward: later steps are retried within the
    budget, escalated if they still fail, and never compensated."""
    reports_to: str | None = None
    """Queue told of every change of the saga's status after its start: the initiator records
    the saga as running when it sends the start command."""
    on_completed: tuple[Notify, ...] = ()
    on_compensated: tuple[Notify, ...] = ()
    forget_when_done: tuple[str, ...] = ()
    """Saga data erased once the saga is final (after ``on_*`` messages were built from it)."""
    step_timeout: timedelta = timedelta(seconds=10)
    """The least time of each step that names none."""
    resend_after: timedelta | None = None
    """The resend interval of each step with a command that names none; None: not resent."""
    max_compensation_attempts: int = 5
    """Compensation sends (first try plus retries on timeout) before escalating."""
    version: int = 1
    """Which version of the definition this is. A saga records the version it started with and
    runs on it to its end; a change to the steps is a new version, registered beside the ones
    sagas in flight still use (docs/design.md, "Changing a saga safely")."""
    budget: timedelta | None = None
    """Time from the start within which the saga should end. A step may use what the steps
    before it left, minus the least time of each step after it; so a participant that restarts
    within the budget still finishes its step, and the saga its run."""

    def __post_init__(self) -> None:
        named: dict[str, str] = {}
        for step in self.steps:
            for name in step.names:
                if named.setdefault(name, step.name) != step.name:
                    raise ValueError(f"steps {named[name]} and {step.name} are both called {name} in saga {self.name}")
        seen: dict[type, str] = {}
        for step in self.steps:
            for invoke in step.invokes:
                for reply in (invoke.success, invoke.failure):
                    if reply is not None and seen.setdefault(reply, step.name) != step.name:
                        raise ValueError(f"{reply.__name__} answers both {seen[reply]} and {step.name}")
        if self.pivot is not None:
            self.index(self.pivot)

    def step(self, name: str) -> Step:
        return self.steps[self.index(name)]

    def index(self, name: str) -> int:
        """The position of the step called ``name`` now or formerly."""
        for index, step in enumerate(self.steps):
            if name in step.names:
                return index
        raise ValueError(f"no step {name!r} in saga {self.name}")

    def least_time(self, step: Step) -> timedelta:
        return step.timeout if step.timeout is not None else self.step_timeout

    def resend_interval(self, step: Step) -> timedelta | None:
        return step.resend_after if step.resend_after is not None else self.resend_after

    def shape(self) -> dict[str, Any]:
        """What decides a saga's path, as data: its steps in order (name, participant, command,
        replies, compensation, what is kept and forgotten), the pivot and what is sent at the
        end. Timings are not in it: they may be set per deployment (``ORCHESTRATOR_TIMEOUTS``)
        and a saga in flight takes a new one in its stride."""

        def invoke(i: Invoke | Local | None) -> Any:
            if isinstance(i, Local):
                return {"local": True}
            if i is None:
                return None
            return {
                "command": i.command.__name__,
                "success": i.success.__name__,
                "failure": i.failure.__name__ if i.failure else None,
                "keep": list(i.keep),
            }

        return {
            "name": self.name,
            "subject": self.subject,
            "pivot": self.pivot,
            "steps": [
                {
                    "name": s.name,
                    "participant": s.participant,
                    "action": invoke(s.action),
                    "compensation": invoke(s.compensation),
                    "forget": list(s.forget),
                    "formerly": list(s.formerly),
                }
                for s in self.steps
            ],
            "on_completed": [n.participant for n in self.on_completed],
            "on_compensated": [n.participant for n in self.on_compensated],
            "forget_when_done": list(self.forget_when_done),
        }

    def fingerprint(self) -> str:
        """A hash of :meth:`shape`: committed beside each version, so that changing the steps of
        a version sagas may be running on is caught by a test."""
        canonical = json.dumps(self.shape(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
