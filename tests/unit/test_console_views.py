"""What the console draws, from saga states made by the pure engine: the path through the
diagram, the timeline's durations, the last hour's bars and the list's cursor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from contracts import messages as c
from orchestrator.console import views
from orchestrator.console.queries import Cursor
from orchestrator.order_saga import order_saga
from tests.unit.test_saga_engine import Saga

DEFINITION = order_saga()


class Timed(Saga):
    """The order saga, keeping each history entry with the time it happened, as the database does."""

    def __init__(self) -> None:
        self.timed: list[SimpleNamespace] = []
        super().__init__()

    def reply(self, message_type, after: float = 0.1, **fields):
        self.now += timedelta(seconds=after - 0.1)  # the scenario adds 0.1 s itself
        if message_type is c.PaymentRefunded:
            fields.setdefault("amount", "25.00")
        return super().reply(message_type, **fields)

    def _apply(self, transition):
        self.timed += [SimpleNamespace(at=self.now, event=h.event, step=h.step, detail=h.detail) for h in transition.history]
        return super()._apply(transition)


def statuses(saga: Timed) -> dict[str, str]:
    return {n.key: n.status for n in views.state_diagram(DEFINITION, saga.state, saga.timed).nodes}


def test_a_failed_step_is_marked_failed_and_the_steps_before_it_compensated():
    saga = Timed()
    saga.succeed_until("fulfill_order")
    saga.fail(c.FulfillmentFailed, "no delivery to AQ")
    for reply in (c.PaymentRefunded, c.InventoryReleased, c.OrderCancelled):
        saga.reply(reply)
    assert saga.status == "compensated"
    found = statuses(saga)
    assert found["step:fulfill_order"] == "failed"
    assert [found[f"step:{s}"] for s in ("create_order", "reserve_inventory", "process_payment")] == ["succeeded"] * 3
    assert found["step:send_confirmation"] == "pending"
    assert [found[f"undo:{s}"] for s in ("create_order", "reserve_inventory", "process_payment")] == ["compensated"] * 3
    assert found["undo:fulfill_order"] == "not_run"
    assert (found["completed"], found["end"]) == ("not_run", "compensated")


def test_a_timed_out_step_stays_timed_out_on_the_forward_path_after_its_compensation():
    saga = Timed()
    saga.succeed_until("fulfill_order")
    while saga.step("fulfill_order") == "running":  # resent within its budget, then given up
        saga.until_deadline("fulfill_order")
    for reply in (c.ShipmentCancelled, c.PaymentRefunded, c.InventoryReleased, c.OrderCancelled):
        saga.reply(reply)
    found = statuses(saga)
    assert (found["step:fulfill_order"], found["undo:fulfill_order"]) == ("timed_out", "compensated")


def test_a_refused_refund_shows_as_compensation_failed_and_the_saga_needs_a_person():
    saga = Timed()
    saga.succeed_until("fulfill_order")
    saga.fail(c.FulfillmentFailed)
    saga.fail(c.PaymentRefundFailed, "refund rejected")
    found = statuses(saga)
    assert found["undo:process_payment"] == "compensation_failed"
    assert found["undo:reserve_inventory"] == "compensating"
    assert found["end"] == "not_run"


def test_a_completed_saga_takes_only_the_forward_path():
    saga = Timed()
    saga.succeed_until("the end")
    diagram = views.state_diagram(DEFINITION, saga.state, saga.timed)
    found = {n.key: n.status for n in diagram.nodes}
    assert found["completed"] == "completed" and found["end"] == "not_run"
    assert not [k for k, s in found.items() if k.startswith("undo:") and s != "not_run"]
    assert all(e.taken for e in diagram.edges if e.points[0][1] == e.points[-1][1] < 100)  # the top row
    assert diagram.width >= max(n.x + n.w for n in diagram.nodes) and min(n.x for n in diagram.nodes) >= 0


def test_a_saga_of_a_definition_this_orchestrator_does_not_run_is_still_drawn_from_its_steps():
    saga = Timed()
    other = SimpleNamespace(name="order_cancellation", steps=())
    diagram = views.state_diagram(other, saga.state, saga.timed)
    assert [n.key for n in diagram.nodes if n.key.startswith("step:")] == [f"step:{s.name}" for s in DEFINITION.steps]


def test_the_timeline_says_how_long_each_step_and_compensation_took():
    saga = Timed()
    saga.reply(c.InventoryReserved, after=2)
    saga.reply(c.PaymentFailed, reason="card declined", after=3)
    saga.reply(c.InventoryReleased, after=0.5)
    events = views.timeline(saga.timed)
    took = {(e.event, e.step): e.took for e in events if e.took is not None}
    assert took == {
        ("step_succeeded", "reserve_inventory"): 2,
        ("step_failed", "process_payment"): 3,
        ("step_compensated", "reserve_inventory"): 0.5,
    }
    assert events[-1].since_start == pytest.approx(5.5)
    kinds = {e.event: e.kind for e in events}
    assert (kinds["step_failed"], kinds["compensation_sent"], kinds["step_succeeded"]) == ("bad", "undo", "good")


def test_operator_actions_and_ignored_replies_stand_out_in_the_timeline():
    saga = Timed()
    saga.succeed_until("fulfill_order")
    saga.fail(c.FulfillmentFailed)
    saga.fail(c.PaymentRefundFailed)
    saga.reply(c.OrderFulfilled, shipment_id=uuid.uuid4())  # late, ignored
    saga.resolve("refunded by hand", actor="ada")
    kinds = {e.event: e.kind for e in views.timeline(saga.timed)}
    assert (kinds["reply_ignored"], kinds["operator_resolved"]) == ("ignored", "operator")


def test_the_last_hour_stacks_each_minute_by_outcome_and_ignores_older_sagas():
    now = datetime(2026, 1, 1, 12, 30, 20, tzinfo=UTC)
    minute = now.replace(second=0)
    rows = [
        (minute, "completed", 3),
        (minute, "compensated", 1),
        (minute - timedelta(minutes=10), "running", 2),
        (minute - timedelta(minutes=61), "completed", 9),
    ]
    chart = views.last_hour_chart(rows, now, width=600, height=100)
    assert chart.peak == 4 and chart.totals["completed"] == 3 and chart.totals["running"] == 2
    latest = [b for b in chart.bars if b.x > 590]
    assert [b.status for b in latest] == ["completed", "compensated"]
    assert sum(b.h for b in latest) == pytest.approx(100) and min(b.y for b in latest) == pytest.approx(0)
    assert [b.h for b in chart.bars if b.status == "running"] == [pytest.approx(50)]


def test_a_page_cursor_round_trips_and_anything_else_is_refused():
    cursor = Cursor(datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC), uuid.uuid4())
    assert Cursor.decode(cursor.encode()) == cursor
    for garbage in ("", "abc", "bm90IGEgY3Vyc29y", cursor.encode()[:-4]):
        with pytest.raises(ValueError):
            Cursor.decode(garbage)
