"""Pure shaping of what the console draws: the state diagram of a saga's definition with
the path it took, the last hour as bars, and the timeline with its durations.

The diagram and the chart are laid out here and drawn as SVG by the templates rather than
by a JavaScript library: a saga definition is a straight line of steps with its
compensations running back underneath, which needs no layout engine, and SVG made on the
server is escaped like the rest of the page, works without scripts and is there for the
browser tests to read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..engine import HistoryEvent, Invoke, SagaDefinition, SagaState, SagaStatus, StepStatus

COMPENSATED, COMPENSATING, COMPLETED, NEEDS_INTERVENTION = (
    SagaStatus.COMPENSATED,
    SagaStatus.COMPENSATING,
    SagaStatus.COMPLETED,
    SagaStatus.NEEDS_INTERVENTION,
)
PENDING, STEP_RUNNING, SUCCEEDED, FAILED, TIMED_OUT = (
    StepStatus.PENDING,
    StepStatus.RUNNING,
    StepStatus.SUCCEEDED,
    StepStatus.FAILED,
    StepStatus.TIMED_OUT,
)
STEP_COMPENSATING, STEP_COMPENSATED, COMPENSATION_FAILED = (
    StepStatus.COMPENSATING,
    StepStatus.COMPENSATED,
    StepStatus.COMPENSATION_FAILED,
)

SAGA_STATUSES = ("running", COMPENSATING, COMPLETED, COMPENSATED, NEEDS_INTERVENTION)
E = HistoryEvent
FORWARD_OUTCOMES = {E.STEP_SUCCEEDED: SUCCEEDED, E.STEP_FAILED: FAILED, E.STEP_TIMED_OUT: TIMED_OUT}


# --------------------------------------------------------------------------- diagram
@dataclass(frozen=True)
class Node:
    key: str
    """``step:<name>``, ``undo:<name>``, ``start``, ``completed`` or ``end``."""
    label: str
    sublabel: str
    status: str
    """A step or saga status, or ``not_run`` for a compensation that was never sent."""
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Edge:
    points: tuple[tuple[int, int], ...]
    taken: bool


@dataclass(frozen=True)
class Diagram:
    width: int
    height: int
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


W, H, GAP, LEFT, TOP, LOWER = 178, 52, 30, 176, 18, 128
END_W = 136


def forward_outcomes(history: list) -> dict[str, str]:
    """How each step's forward attempt ended, from the history (its status is overwritten
    once the step is compensated)."""
    return {h.step: FORWARD_OUTCOMES[h.event] for h in history if h.event in FORWARD_OUTCOMES}


def state_diagram(definition: SagaDefinition | None, state: SagaState, history: list) -> Diagram:
    """The definition's steps left to right, each compensation under its step, and the path
    this saga took highlighted: forward along the top, back along the bottom."""
    outcomes = forward_outcomes(history)
    # By name, former ones too: a saga keeps the step names it started with.
    steps = {n: s for s in definition.steps for n in s.names} if definition and definition.name == state.definition else {}
    nodes: list[Node] = [Node("start", "start", "", "start", LEFT - GAP - 64, TOP + 8, 64, H - 16)]
    edges: list[Edge] = []
    failed_at = None
    for index, step_state in enumerate(state.steps):
        x = LEFT + index * (W + GAP)
        step = steps.get(step_state.name)
        forward = outcomes.get(step_state.name) or (
            step_state.status if step_state.status in (PENDING, STEP_RUNNING) else SUCCEEDED
        )
        command = (step.action.command.__name__ if isinstance(step.action, Invoke) else "by the initiator") if step else ""
        nodes.append(Node(f"step:{step_state.name}", step_state.name, command, forward, x, TOP, W, H))
        previous_x = x - GAP
        edges.append(Edge(((previous_x, TOP + H // 2), (x, TOP + H // 2)), forward != PENDING))
        if forward in (FAILED, TIMED_OUT) and failed_at is None:
            failed_at = index
        if step is None or step.compensation is not None:
            undone = step_state.status in (STEP_COMPENSATING, STEP_COMPENSATED, COMPENSATION_FAILED)
            undo_command = step.compensation.command.__name__ if step and step.compensation else "undo"
            nodes.append(
                Node(
                    f"undo:{step_state.name}",
                    undo_command,
                    step_state.status.replace("_", " ") if undone else "not run",
                    step_state.status if undone else "not_run",
                    x,
                    LOWER,
                    W,
                    H,
                )
            )
    end_x = LEFT + len(state.steps) * (W + GAP)
    nodes.append(
        Node(
            "completed",
            "completed",
            "",
            COMPLETED if state.status == COMPLETED else "not_run",
            end_x,
            TOP + 8,
            END_W - 30,
            H - 16,
        )
    )
    edges.append(Edge(((end_x - GAP, TOP + H // 2), (end_x, TOP + H // 2)), state.status == COMPLETED))
    compensating = state.status in (COMPENSATING, COMPENSATED, NEEDS_INTERVENTION)
    if failed_at is not None or compensating:
        turn = failed_at if failed_at is not None else len(state.steps) - 1
        turn_x = LEFT + turn * (W + GAP) + W // 2
        edges.append(Edge(((turn_x, TOP + H), (turn_x, LOWER)), compensating))
        for index in range(turn, 0, -1):
            x = LEFT + index * (W + GAP)
            edges.append(Edge(((x, LOWER + H // 2), (x - GAP, LOWER + H // 2)), compensating))
    ended = state.status in (COMPENSATED, NEEDS_INTERVENTION)
    nodes.append(
        Node(
            "end",
            state.status.replace("_", " ") if ended else "compensated",
            "",
            state.status if ended else "not_run",
            LEFT - GAP - END_W,
            LOWER + 8,
            END_W,
            H - 16,
        )
    )
    edges.append(Edge(((LEFT, LOWER + H // 2), (LEFT - GAP, LOWER + H // 2)), ended))
    return Diagram(end_x + END_W - 20, LOWER + H + 14, tuple(nodes), tuple(edges))


# --------------------------------------------------------------------------- last hour
@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    status: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    peak: int
    totals: dict[str, int]


OUTCOME_ORDER = (COMPLETED, COMPENSATED, NEEDS_INTERVENTION, COMPENSATING, "running")


def last_hour_chart(rows: list[tuple[datetime, str, int]], now: datetime, width: int = 600, height: int = 110) -> Chart:
    """Sagas started in each of the last 60 minutes, stacked by how they stand now."""
    per_minute: dict[int, Counter] = {}
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    for minute, status, count in rows:
        slot = int((minute - start).total_seconds() // 60)
        if 0 <= slot < 60:
            per_minute.setdefault(slot, Counter())[status] += count
    peak = max((sum(c.values()) for c in per_minute.values()), default=0)
    slot_w = width / 60
    bars = []
    for slot, counted in sorted(per_minute.items()):
        y = float(height)
        label = (start + timedelta(minutes=slot)).strftime("%H:%M")
        summary = ", ".join(f"{counted[s]} {s.replace('_', ' ')}" for s in OUTCOME_ORDER if counted[s])
        for status in OUTCOME_ORDER:
            if counted[status]:
                h = height * counted[status] / peak
                y -= h
                bars.append(Bar(slot * slot_w + 1, y, slot_w - 2, h, status, f"{label} UTC: {summary}"))
    totals: Counter[str] = Counter()
    for counted in per_minute.values():
        totals.update(counted)
    return Chart(width, height, tuple(bars), peak, {s: totals[s] for s in OUTCOME_ORDER})


# --------------------------------------------------------------------------- timeline
@dataclass(frozen=True)
class Event:
    at: datetime
    since_start: float
    since_previous: float
    took: float | None
    """For an event that ends something: seconds since it began (the step's start, or the
    compensation's latest send)."""
    event: str
    step: str | None
    detail: str | None
    kind: str
    """How to colour it: ``good``, ``bad``, ``warn``, ``undo``, ``operator``, ``ignored`` or ``info``."""


KINDS = {
    E.STEP_SUCCEEDED: "good",
    E.SAGA_COMPLETED: "good",
    E.STEP_FAILED: "bad",
    E.COMPENSATION_FAILED: "bad",
    E.SAGA_NEEDS_INTERVENTION: "bad",
    E.STEP_TIMED_OUT: "warn",
    E.COMPENSATION_TIMED_OUT: "warn",
    E.COMPENSATION_STARTED: "warn",
    E.COMPENSATION_SENT: "undo",
    E.STEP_COMPENSATED: "undo",
    E.SAGA_COMPENSATED: "undo",
    E.REPLY_IGNORED: "ignored",
    E.REPLY_REFUSED: "bad",  # a forged, replayed or misrouted reply: someone sent what they should not
}
BEGINS = {E.STEP_STARTED: "forward", E.COMPENSATION_SENT: "undo"}
ENDS = {
    E.STEP_SUCCEEDED: "forward",
    E.STEP_FAILED: "forward",
    E.STEP_TIMED_OUT: "forward",
    E.STEP_COMPENSATED: "undo",
    E.COMPENSATION_FAILED: "undo",
    E.COMPENSATION_TIMED_OUT: "undo",
}
OPERATOR = {E.OPERATOR_RETRY_STEP, E.OPERATOR_RETRY_COMPENSATION, E.OPERATOR_RESOLVED, E.OPERATOR_REDRIVE}


def timeline(history: list) -> list[Event]:
    """Every history entry in order, with its time since the saga started and since the
    entry before, and how long what it ends took."""
    if not history:
        return []
    first, previous = history[0].at, history[0].at
    began: dict[tuple[str, str | None], datetime] = {}
    events = []
    for h in history:
        took = None
        if h.event in ENDS and (h.step and (ENDS[h.event], h.step) in began):
            took = (h.at - began[(ENDS[h.event], h.step)]).total_seconds()
        if h.event in BEGINS:
            began[(BEGINS[h.event], h.step)] = h.at
        kind = "operator" if h.event in OPERATOR else KINDS.get(h.event, "info")
        events.append(
            Event(h.at, (h.at - first).total_seconds(), (h.at - previous).total_seconds(), took, h.event, h.step, h.detail, kind)
        )
        previous = h.at
    return events


def trace_url(template: str, trace: dict[str, str] | None) -> str | None:
    """Where a saga's trace is seen: ``template`` with ``{trace_id}`` (32 hex digits, W3C) or
    ``{xray_trace_id}`` (the same id as X-Ray writes it, ``1-<8 hex>-<24 hex>``) filled in
    from the saga's ``traceparent``; None without a template or a trace."""
    parts = (trace or {}).get("traceparent", "").split("-")
    if not template or len(parts) != 4 or len(parts[1]) != 32:
        return None
    trace_id = parts[1]
    return template.format(trace_id=trace_id, xray_trace_id=f"1-{trace_id[:8]}-{trace_id[8:]}")
