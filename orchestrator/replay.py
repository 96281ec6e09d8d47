"""Replaying recorded sagas against the definitions of the code at hand, before it is deployed.

A saga's history records the path it took: which steps started, in what order, how each
ended, which compensations were sent. :func:`replay` walks the same outcomes through a
definition and reports the first point where the definition would have taken another path:
a different step started after the same answers, a step started that it would never have
reached, a compensation in another order, a step it no longer knows. On the same code it
reports nothing; on a definition whose steps were changed without a new version it reports
where the sagas already running on that version would go wrong. No I/O: ``sagactl replay``
fetches the histories from the saga API and runs this in its own process, with its own code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .engine import HistoryEvent, Local, SagaDefinition

E = HistoryEvent
OUTCOMES = {E.STEP_SUCCEEDED, E.STEP_FAILED, E.STEP_TIMED_OUT, E.STEP_ESCALATED}
KNOWN = frozenset(str(event) for event in E)


@dataclass(frozen=True)
class Divergence:
    position: str
    """Where, in words: "step 3 started", "compensation 2"."""
    recorded: str | None
    would: str | None

    def __str__(self) -> str:
        recorded = self.recorded or "nothing"
        would = self.would or "nothing"
        return f"{self.position}: the saga did {recorded}, this code would do {would}"


def _first_seen(steps: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for step in steps:
        if step not in seen:
            seen.append(step)
    return seen


def replay(definition: SagaDefinition, history: list[tuple[str, str | None]], *, final: bool) -> Divergence | None:
    """The first divergence of a saga's recorded ``history`` ((event, step) in order) from the
    path ``definition`` takes on the same outcomes; None when it takes the same one. ``final``:
    the saga has ended, so a step this code would still start is a divergence too."""
    canonical = {alias: step.name for step in definition.steps for alias in step.names}
    events = [(E(event), name) for event, name in history if event in KNOWN]
    unknown = next((name for _, name in events if name is not None and name not in canonical), None)
    if unknown is not None:
        return Divergence("a step of the saga", f"step {unknown}", "no such step")
    events = [(event, canonical[name] if name else None) for event, name in events]
    outcome: dict[str, HistoryEvent] = {}
    for event, name in events:
        if event in OUTCOMES and name is not None:
            outcome.setdefault(name, event)  # the first answer decided the path

    # Forward: every step in order until one ends the forward path (a failure or timeout before the pivot).
    expected: list[str] = []
    compensable: list[str] = []
    past_pivot = False
    for step in definition.steps:
        if isinstance(step.action, Local):
            compensable += [step.name] if step.compensation else []
        else:
            expected.append(step.name)
            answered = outcome.get(step.name)
            if answered is None:
                break
            if answered in (E.STEP_SUCCEEDED, E.STEP_TIMED_OUT) and step.compensation and not past_pivot:
                compensable.append(step.name)
            if answered in (E.STEP_FAILED, E.STEP_TIMED_OUT) and not past_pivot:
                break
        past_pivot = past_pivot or step.name == definition.pivot
    started = _first_seen(name for event, name in events if event == E.STEP_STARTED and name)
    for index in range(max(len(started), len(expected))):
        recorded = started[index] if index < len(started) else None
        would = expected[index] if index < len(expected) else None
        if recorded != would and (recorded is not None or final):
            did, does = (f"start {recorded}" if recorded else None), (f"start {would}" if would else None)
            return Divergence(f"step {index + 1} started", did, does)

    # Backward: the compensations, latest applied step first.
    compensated = _first_seen(name for event, name in events if event == E.COMPENSATION_SENT and name)
    if not compensated:
        return None
    undo = list(reversed(compensable))
    for index, recorded in enumerate(compensated):
        would = undo[index] if index < len(undo) else None
        if recorded != would:
            return Divergence(f"compensation {index + 1}", f"undo {recorded}", f"undo {would}" if would else None)
    return None
