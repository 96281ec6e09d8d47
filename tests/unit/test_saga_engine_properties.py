"""Properties of the saga engine under any order of replies, duplicates and deadlines."""

from __future__ import annotations

import uuid
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import messages as c
from orchestrator import engine as e
from orchestrator.order_saga import order_saga
from tests.factories import T0, order_data

ENGINE = e.SagaEngine(order_saga())
DEFINITION = ENGINE.definition
FIELDS = {
    c.PaymentProcessed: {"payment_id": uuid.uuid4()},
    c.OrderFulfilled: {"shipment_id": uuid.uuid4()},
    c.PaymentRefunded: {"amount": "1.00"},
}

actions = st.lists(
    st.one_of(
        st.tuples(st.just("ok"), st.integers(0, 4)),
        st.tuples(st.just("fail"), st.integers(0, 4)),
        st.tuples(st.just("again"), st.integers(0, 50)),
        st.tuples(st.just("tick"), st.sampled_from([1, 5, 20, 200])),
    ),
    max_size=60,
)


def reply(reply_type, order_id, reason="no"):
    fields = dict(FIELDS.get(reply_type, {}))
    if issubclass(reply_type, c.FailureReply):
        fields["reason"] = reason
    return reply_type(order_id=order_id, **fields)


def in_flight(state: e.SagaState) -> list[tuple[int, str]]:
    return [(i, s.status) for i, s in enumerate(state.steps) if s.status in (e.StepStatus.RUNNING, e.StepStatus.COMPENSATING)]


@settings(max_examples=300, deadline=None)
@given(actions)
def test_any_sequence_keeps_the_saga_consistent(script):
    data = order_data()
    order_id = uuid.UUID(data["order_id"])
    t = ENGINE.start(uuid.uuid4(), data, T0)
    state, now, sent, replies = t.state, T0, list(t.outgoing), []
    for action, arg in script:
        if action == "tick":
            now += timedelta(seconds=arg)
            t = ENGINE.on_deadline(state, now)
        else:
            flights = in_flight(state)
            if action == "again" and replies:
                message, origin = replies[arg % len(replies)]
            elif flights and action in ("ok", "fail"):
                index, status = flights[arg % len(flights)]
                step = DEFINITION.steps[index]
                invoke = step.action if status == e.StepStatus.RUNNING else step.compensation
                reply_type = invoke.success if action == "ok" or invoke.failure is None else invoke.failure
                message = reply(reply_type, order_id)
                origin = ENGINE.genuine_origin(state, reply_type)
            else:
                continue
            replies.append((message, origin))
            now += timedelta(milliseconds=10)
            t = ENGINE.on_reply(state, message, now, causation_id=origin[0], participant=origin[1])
        before, state = state, t.state
        sent += t.outgoing
        check(before, state, t)
    check_final(state, sent)


def check(before: e.SagaState, after: e.SagaState, t: e.Transition) -> None:
    running = [s for s in after.steps if s.status == e.StepStatus.RUNNING]
    assert len(running) <= 1, "two forward steps at once"
    if after.status in (e.SagaStatus.COMPENSATING, e.SagaStatus.COMPENSATED, e.SagaStatus.NEEDS_INTERVENTION):
        assert not running, "a forward step runs while compensating"
    for out in t.sends:
        if out.expects_reply:  # a command goes out only for a step now waiting on it
            assert after.step(out.step).status in (e.StepStatus.RUNNING, e.StepStatus.COMPENSATING)
    if before.status == e.SagaStatus.COMPLETED:
        assert after.status == e.SagaStatus.COMPLETED and not t.outgoing, "a completed saga moved"
    for old, new in zip(before.steps, after.steps, strict=True):
        if old.status == e.StepStatus.COMPENSATED:
            assert new.status == e.StepStatus.COMPENSATED, "a compensated step came back"


def check_final(state: e.SagaState, sent: list[e.Outgoing]) -> None:
    statuses = [s.status for s in state.steps]
    if state.status == e.SagaStatus.COMPLETED:
        assert statuses == [e.StepStatus.SUCCEEDED] * len(statuses)
        assert isinstance(sent[-1], e.Send) and type(sent[-1].message) is c.ConfirmOrder
    if state.status in (e.SagaStatus.COMPENSATED, e.SagaStatus.NEEDS_INTERVENTION):
        # nothing stays applied: every step that succeeded was undone (or escalated)
        assert e.StepStatus.SUCCEEDED not in statuses
        assert statuses[0] in (e.StepStatus.COMPENSATED, e.StepStatus.COMPENSATION_FAILED, e.StepStatus.COMPENSATING)
    if state.status == e.SagaStatus.NEEDS_INTERVENTION:
        assert e.StepStatus.COMPENSATION_FAILED in statuses
    if state.status == e.SagaStatus.COMPENSATED:
        assert e.StepStatus.COMPENSATION_FAILED not in statuses
    escalated = [o.step for o in sent if isinstance(o, e.Escalate) and o.kind == e.Escalation.STEP]
    assert sorted(escalated) == sorted(s.name for s in state.steps if s.status == e.StepStatus.COMPENSATION_FAILED)
    commands = [type(o.message) for o in sent if isinstance(o, e.Send)]
    assert c.ConfirmOrder not in commands or state.status == e.SagaStatus.COMPLETED
    # compensations start strictly backwards, from the last applied step to the first
    compensates = {s.compensation.command: s.name for s in DEFINITION.steps if s.compensation}
    first_sends: list[str] = []
    for command in commands:
        name = compensates.get(command)
        if name and name not in first_sends:
            first_sends.append(name)
    order = [s.name for s in DEFINITION.steps]
    positions = [order.index(name) for name in first_sends]
    assert positions == sorted(positions, reverse=True)
