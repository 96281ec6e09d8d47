"""A saga of the tests' own (``tests/sagas/loyalty.py``), run through the pure engine with the
given/expect helper: nothing in the engine, the registry or the console knows it, yet it
starts, completes, compensates, resends, escalates, and is resolved and settled by hand."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from orchestrator import engine as e
from orchestrator.console import views
from orchestrator.main import DEFINITIONS
from orchestrator.testing import EPOCH, SagaScenario
from tests.factories import order_data
from tests.sagas import loyalty as ly

ORDER = uuid.uuid4()


def started() -> SagaScenario:
    return SagaScenario(ly.loyalty_saga(), {"order_id": str(ORDER), "points": 120}).expect(ly.ReservePoints)


def test_it_runs_step_by_step_to_its_end_notice():
    saga = started()
    [reserve] = saga.latest
    assert (reserve.participant, reserve.step, reserve.attempt, reserve.message.points) == (
        ly.LOYALTY_COMMANDS,
        "reserve_points",
        1,
        120,
    )
    saga.reply(ly.PointsReserved(order_id=ORDER, ledger_id="L-7")).expect(ly.SendVoucher)
    assert saga.latest[0].participant == ly.VOUCHER_COMMANDS and saga.state.data["ledger_id"] == "L-7"
    saga.reply(ly.VoucherSent(order_id=ORDER)).expect(ly.ConfirmPoints)
    assert saga.status == e.SagaStatus.COMPLETED and not saga.latest[0].expects_reply
    assert [h.event for h in saga.history][-1] == e.HistoryEvent.SAGA_COMPLETED


def test_a_refused_voucher_releases_the_points_with_what_the_reservation_returned():
    saga = started()
    saga.reply(ly.PointsReserved(order_id=ORDER, ledger_id="L-7"))
    saga.reply(ly.VoucherBounced(order_id=ORDER, reason="no such mailbox")).expect(ly.ReleasePoints)
    assert saga.latest[0].message.ledger_id == "L-7"
    assert (saga.state.failed_step, saga.state.failure_reason) == ("send_voucher", "no such mailbox")
    saga.reply(ly.PointsReleased(order_id=ORDER)).expect()
    assert saga.status == e.SagaStatus.COMPENSATED and saga.step("reserve_points") == e.StepStatus.COMPENSATED


def test_silence_is_resent_within_its_budget_then_undone_then_escalated_and_resolved_by_hand():
    saga = started()
    saga.tick(1).expect(ly.ReservePoints)  # resent after its own resend_after
    while saga.step("reserve_points") == e.StepStatus.RUNNING:
        saga.until_deadline("reserve_points")
    assert saga.now - EPOCH == timedelta(seconds=4)  # the budget less the next step's least time
    saga.expect(ly.ReleasePoints)
    assert saga.status == e.SagaStatus.COMPENSATING  # nothing before it to undo; its own undo is not acknowledged
    while saga.step("reserve_points") == e.StepStatus.COMPENSATING:
        saga.until_deadline("reserve_points")
    saga.expect(e.Escalate)
    [escalation] = saga.latest
    assert (escalation.kind, escalation.step, type(escalation.command), escalation.attempts) == (
        e.Escalation.STEP,
        "reserve_points",
        ly.ReleasePoints,
        2,
    )
    assert saga.status == e.SagaStatus.NEEDS_INTERVENTION
    assert saga.state.step("reserve_points").escalation_ids == [str(escalation.message_id)]

    saga.resolve("points released by hand").expect(e.Settle)
    [settle] = saga.latest
    assert (settle.participant, settle.step, settle.reason) == (ly.LOYALTY_COMMANDS, "reserve_points", "points released by hand")
    assert saga.status == e.SagaStatus.COMPENSATED
    saga.settled("reserve_points", already_compensated=True).expect(e.Escalate)
    assert saga.latest[0].kind == e.Escalation.SETTLED_TWICE


def test_it_is_registered_beside_this_systems_sagas_and_its_replies_reach_it_alone():
    registry = e.SagaRegistry(*DEFINITIONS, ly.loyalty_saga())
    assert ly.StartLoyaltySaga in registry.starts() and ly.PointsReserved in registry.replies()
    assert registry.step_of_message_types()["ReleasePoints"] == "reserve_points"
    order = SagaScenario(DEFINITIONS[0], order_data())
    ignored = registry["order"].on_reply(
        order.state, ly.PointsReserved(order_id=ORDER, ledger_id="L"), EPOCH, causation_id=None, participant=None
    )
    assert not ignored.changed


def test_the_console_draws_it_from_its_definition():
    saga = started()
    saga.reply(ly.PointsReserved(order_id=ORDER, ledger_id="L-7"))
    saga.reply(ly.VoucherBounced(order_id=ORDER, reason="no such mailbox"))
    history = [_Row(EPOCH, h.event, h.step, h.detail) for h in saga.history]
    diagram = views.state_diagram(saga.engine.definition, saga.state, history)
    labels = {n.key: (n.label, n.sublabel, n.status) for n in diagram.nodes}
    assert labels["step:reserve_points"] == ("reserve_points", "ReservePoints", e.StepStatus.SUCCEEDED)
    assert labels["step:send_voucher"] == ("send_voucher", "SendVoucher", e.StepStatus.FAILED)
    assert labels["undo:reserve_points"][:2] == ("ReleasePoints", "compensating")
    assert [t.kind for t in views.timeline(history)][-2:] == ["warn", "undo"]


def test_the_engine_imports_nothing_of_this_system():
    package = Path(e.__file__).parent
    for module in package.glob("*.py"):
        imports = [line for line in module.read_text().splitlines() if line.startswith(("import ", "from "))]
        assert not [line for line in imports if "contracts" in line or "topology" in line], module.name


class _Row:
    """A ``saga_history`` row as the repository returns it."""

    def __init__(self, at, event, step, detail) -> None:
        self.at, self.event, self.step, self.detail = at, str(event), step, detail
