"""The saga engine with no I/O: given a saga and replies, expect commands and states."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from contracts import messages as c
from orchestrator import engine as e
from orchestrator.handlers import staged
from orchestrator.order_saga import order_saga
from orchestrator.testing import SagaScenario
from tests import factories
from tests.factories import T0, order_data

ENGINE = e.SagaEngine(order_saga())


class Saga(factories.Saga):
    """The order saga under test."""

    def __init__(self) -> None:
        super().__init__(order_saga(), order_data())

    def succeed_until(self, step: str) -> None:
        replies = {
            "reserve_inventory": c.InventoryReserved,
            "process_payment": c.PaymentProcessed,
            "fulfill_order": c.OrderFulfilled,
            "send_confirmation": c.ConfirmationSent,
        }
        for name, reply in replies.items():
            if name == step:
                return
            self.reply(reply)


def test_start_marks_create_order_done_and_reserves_inventory():
    saga = Saga()
    assert saga.state.status == e.SagaStatus.RUNNING
    assert saga.step("create_order") == e.StepStatus.SUCCEEDED
    assert saga.step("reserve_inventory") == e.StepStatus.RUNNING
    [command] = saga.sent
    assert isinstance(command.message, c.ReserveInventory)
    assert command.destination == "queue:inventory-commands"
    assert command.message.items[0].quantity == 2


def test_all_steps_succeed_then_order_is_confirmed():
    saga = Saga()
    saga.succeed_until("end")
    assert saga.state.status == e.SagaStatus.COMPLETED
    assert [type(o.message) for o in saga.sent] == [
        c.ReserveInventory,
        c.ProcessPayment,
        c.FulfillOrder,
        c.SendConfirmation,
        c.ConfirmOrder,
    ]
    assert saga.sent[1].message.amount == Decimal("25.00")
    assert all(s.status == e.StepStatus.SUCCEEDED for s in saga.state.steps)
    assert saga.state.next_deadline is None


@pytest.mark.parametrize(
    "failing_step, failure, undone",
    [
        ("reserve_inventory", c.InventoryReservationFailed, [c.CancelOrder]),
        ("process_payment", c.PaymentFailed, [c.ReleaseInventory, c.CancelOrder]),
        ("fulfill_order", c.FulfillmentFailed, [c.RefundPayment, c.ReleaseInventory, c.CancelOrder]),
        ("send_confirmation", c.ConfirmationFailed, [c.CancelShipment, c.RefundPayment, c.ReleaseInventory, c.CancelOrder]),
    ],
)
def test_failure_compensates_completed_steps_in_reverse_one_at_a_time(failing_step, failure, undone):
    saga = Saga()
    saga.succeed_until(failing_step)
    sent_before = len(saga.sent)
    saga.fail(failure, "declined")
    assert saga.state.status == e.SagaStatus.COMPENSATING
    assert saga.state.failed_step == failing_step and saga.state.failure_reason == "declined"
    assert saga.step(failing_step) == e.StepStatus.FAILED
    acks = {
        c.CancelShipment: c.ShipmentCancelled,
        c.RefundPayment: c.PaymentRefunded,
        c.ReleaseInventory: c.InventoryReleased,
        c.CancelOrder: c.OrderCancelled,
    }
    for expected in undone:
        # exactly one compensation in flight: the next is sent only after this one's ack
        assert len(saga.sent) == sent_before + 1
        assert saga.last_sent() is expected
        sent_before = len(saga.sent)
        fields = {"amount": Decimal("25.00")} if expected is c.RefundPayment else {}
        saga.reply(acks[expected], **fields)
    assert len(saga.sent) == sent_before
    assert saga.state.status == e.SagaStatus.COMPENSATED
    assert saga.step("create_order") == e.StepStatus.COMPENSATED


def test_cancel_order_carries_the_failure_reason():
    saga = Saga()
    saga.fail(c.InventoryReservationFailed, "SKU-1: only 1 available")
    assert saga.last_sent() is c.CancelOrder
    assert saga.sent[-1].destination == "queue:order-commands"
    assert saga.sent[-1].message.reason == "SKU-1: only 1 available"


def test_duplicate_and_late_replies_change_nothing():
    saga = Saga()
    saga.reply(c.InventoryReserved)
    before = (saga.state, len(saga.sent))
    t = saga.reply(c.InventoryReserved)  # duplicate
    assert not t.outgoing and t.history[0].event == "reply_ignored"
    assert saga.state.steps == before[0].steps and len(saga.sent) == before[1]
    t = saga.reply(c.ConfirmationSent)  # a reply for a step that has not started
    assert not t.outgoing and saga.step("send_confirmation") == e.StepStatus.PENDING


def test_duplicate_failure_after_compensation_started_does_not_rewind():
    saga = Saga()
    saga.reply(c.InventoryReserved)
    saga.fail(c.PaymentFailed)
    sent = len(saga.sent)
    saga.fail(c.PaymentFailed)
    saga.reply(c.PaymentProcessed, payment_id=uuid.uuid4())
    assert len(saga.sent) == sent
    assert saga.step("process_payment") == e.StepStatus.FAILED


def test_timed_out_step_is_compensated_too_and_a_late_reply_is_only_logged():
    saga = Saga()
    saga.succeed_until("fulfill_order")
    saga.tick(4)
    assert saga.step("fulfill_order") == e.StepStatus.RUNNING
    while saga.step("fulfill_order") == e.StepStatus.RUNNING:
        saga.until_deadline("fulfill_order")
    assert saga.step("fulfill_order") == e.StepStatus.COMPENSATING
    assert saga.state.failed_step == "fulfill_order"
    # its participant may be down: the earlier steps are undone without waiting for it
    assert [type(o.message) for o in saga.sent[-2:]] == [c.CancelShipment, c.RefundPayment]
    t = saga.reply(c.OrderFulfilled, shipment_id=uuid.uuid4())  # late
    assert not t.outgoing and t.history[0].event == "reply_ignored"
    saga.reply(c.PaymentRefunded, amount=Decimal("25.00"))
    saga.reply(c.InventoryReleased)
    t = saga.reply(c.OrderCancelled)
    # The chain reached the bottom (the order is cancelled, its customer told), but the shipment's
    # cancellation is not acknowledged: the saga is not compensated yet, and says nothing final.
    assert saga.state.status == e.SagaStatus.COMPENSATING and not any(h.event == "saga_compensated" for h in t.history)
    assert saga.step("fulfill_order") == e.StepStatus.COMPENSATING
    t = saga.reply(c.ShipmentCancelled)  # the participant is back
    assert saga.step("fulfill_order") == e.StepStatus.COMPENSATED
    assert saga.state.status == e.SagaStatus.COMPENSATED and saga.state.next_deadline is None
    assert [h.event for h in t.history].count("saga_compensated") == 1


def test_timed_out_compensation_that_is_never_acknowledged_escalates_the_saga_still_compensating():
    saga = Saga()
    saga.succeed_until("fulfill_order")
    while saga.step("fulfill_order") == e.StepStatus.RUNNING:
        saga.until_deadline("fulfill_order")
    saga.reply(c.PaymentRefunded, amount=Decimal("25.00"))
    saga.reply(c.InventoryReleased)
    saga.reply(c.OrderCancelled)
    while saga.step("fulfill_order") == e.StepStatus.COMPENSATING:
        assert saga.state.status == e.SagaStatus.COMPENSATING, "never compensated on the way"
        saga.tick((saga.state.step("fulfill_order").deadline - saga.now).total_seconds())
    assert saga.state.status == e.SagaStatus.NEEDS_INTERVENTION
    assert saga.step("fulfill_order") == e.StepStatus.COMPENSATION_FAILED
    assert sum(isinstance(o.message, c.CompensationEscalated) for o in saga.sent) == 1


def test_unacknowledged_compensation_is_retried_with_backoff_then_escalated():
    saga = Saga()
    saga.reply(c.InventoryReserved)
    saga.fail(c.PaymentFailed)
    assert saga.last_sent() is c.ReleaseInventory
    waits = []
    while saga.step("reserve_inventory") == e.StepStatus.COMPENSATING:
        deadline = saga.state.step("reserve_inventory").deadline
        waits.append((deadline - saga.now).total_seconds())
        saga.tick(waits[-1])
    assert waits == [5, 10, 20, 40, 80]
    assert saga.step("reserve_inventory") == e.StepStatus.COMPENSATION_FAILED
    escalations = [o for o in saga.sent if isinstance(o.message, c.CompensationEscalated)]
    assert len(escalations) == 1
    assert escalations[0].destination == "queue:saga-escalations"
    assert escalations[0].message.attempts == 5 and escalations[0].message.command["type"] == "ReleaseInventory"
    # the earlier step is still compensated
    assert saga.last_sent() is c.CancelOrder
    saga.reply(c.OrderCancelled)
    assert saga.state.status == e.SagaStatus.NEEDS_INTERVENTION


def test_refused_refund_escalates_once_and_earlier_steps_are_still_undone():
    saga = Saga()
    saga.succeed_until("fulfill_order")
    saga.fail(c.FulfillmentFailed, "undeliverable")
    saga.fail(c.PaymentRefundFailed, "refund rejected")
    assert saga.step("process_payment") == e.StepStatus.COMPENSATION_FAILED
    assert sum(isinstance(o.message, c.CompensationEscalated) for o in saga.sent) == 1
    saga.reply(c.InventoryReleased)
    saga.reply(c.OrderCancelled)
    assert saga.state.status == e.SagaStatus.NEEDS_INTERVENTION
    assert saga.step("reserve_inventory") == e.StepStatus.COMPENSATED


def test_operator_retry_after_fix_reaches_compensated():
    saga = Saga()
    saga.succeed_until("fulfill_order")
    saga.fail(c.FulfillmentFailed)
    saga.fail(c.PaymentRefundFailed, "refund rejected")
    saga.reply(c.InventoryReleased)
    saga.reply(c.OrderCancelled)
    saga.retry_compensation("process_payment", "ops")
    assert saga.state.status == e.SagaStatus.COMPENSATING and saga.last_sent() is c.RefundPayment
    saga.reply(c.PaymentRefunded, amount=Decimal("25.00"))
    assert saga.state.status == e.SagaStatus.COMPENSATED


def test_resolve_by_hand_only_from_needs_intervention():
    saga = Saga()
    with pytest.raises(ValueError):
        ENGINE.resolve(saga.state, "nothing to do", saga.now, "ops")
    saga.succeed_until("fulfill_order")
    saga.fail(c.FulfillmentFailed)
    saga.fail(c.PaymentRefundFailed)
    saga.reply(c.InventoryReleased)
    saga.reply(c.OrderCancelled)
    saga.resolve("refunded by bank transfer", "ops")
    assert saga.state.status == e.SagaStatus.COMPENSATED
    assert saga.last.history[0].detail == "by ops: refunded by bank transfer"


def test_a_late_acknowledgement_of_an_escalated_compensation_is_recorded_and_the_saga_waits_for_its_operator():
    saga = Saga()
    saga.reply(c.InventoryReserved)
    saga.fail(c.PaymentFailed)
    while saga.step("reserve_inventory") == e.StepStatus.COMPENSATING:
        saga.tick((saga.state.step("reserve_inventory").deadline - saga.now).total_seconds())
    saga.reply(c.OrderCancelled)
    assert saga.state.status == e.SagaStatus.NEEDS_INTERVENTION
    t = saga.reply(c.InventoryReleased)  # the participant was only slow
    assert saga.step("reserve_inventory") == e.StepStatus.COMPENSATED
    # Handed to a person, the saga leaves needs_intervention only by their recorded action.
    assert saga.state.status == e.SagaStatus.NEEDS_INTERVENTION and t.history[-1].event == "awaiting_operator"
    saga.resolve("the release went through after all", "ops")
    assert saga.state.status == e.SagaStatus.COMPENSATED


def test_resolve_settles_a_compensation_still_in_flight():
    saga = Saga()
    saga.succeed_until("send_confirmation")
    saga.fail(c.ConfirmationFailed)
    saga.fail(c.ShipmentCancellationFailed, "dispatched")
    saga.reply(c.PaymentRefunded, amount=Decimal("25.00"))
    saga.reply(c.InventoryReleased)
    saga.reply(c.OrderCancelled)
    saga.retry_compensation("fulfill_order", "ops")
    assert saga.state.status == e.SagaStatus.COMPENSATING  # the retry is still out when a person closes the saga
    saga.resolve("parcel written off", "ops")
    assert saga.step("fulfill_order") == e.StepStatus.COMPENSATED and saga.state.next_deadline is None
    saga.tick(600)
    assert saga.state.status == e.SagaStatus.COMPENSATED


def test_resolving_a_stuck_compensation_still_undoes_the_steps_below_it():
    saga = Saga()
    saga.succeed_until("send_confirmation")
    saga.fail(c.ConfirmationFailed)
    saga.reply(c.ShipmentCancelled)
    assert saga.step("process_payment") == e.StepStatus.COMPENSATING  # the provider never answers
    saga.resolve("refunded by hand", "ops")
    assert saga.last_sent() is c.ReleaseInventory and saga.status == e.SagaStatus.COMPENSATING
    saga.reply(c.InventoryReleased)
    saga.reply(c.OrderCancelled)
    assert saga.status == e.SagaStatus.COMPENSATED


def test_the_refusal_of_an_earlier_compensation_attempt_does_not_reopen_a_retry():
    saga = Saga()
    saga.succeed_until("fulfill_order")
    saga.fail(c.FulfillmentFailed)
    first = saga.sent[-1].message_id
    saga.tick(5)  # RefundPayment unanswered: sent again
    second = saga.sent[-1].message_id
    assert saga.last_sent() is c.RefundPayment and first != second
    stale = c.PaymentRefundFailed(order_id=saga.order_id, reason="late answer to attempt 1")
    saga.last = ENGINE.on_reply(saga.state, stale, saga.now, causation_id=first, participant="payment-commands")
    assert saga.step("process_payment") == e.StepStatus.COMPENSATING and not saga.last.outgoing
    current = c.PaymentRefundFailed(order_id=saga.order_id, reason="refused")
    saga._apply(ENGINE.on_reply(saga.state, current, saga.now, causation_id=second, participant="payment-commands"))
    assert saga.step("process_payment") == e.StepStatus.COMPENSATION_FAILED


def test_data_for_steps_that_never_run_is_forgotten_when_compensation_starts():
    saga = Saga()
    saga.fail(c.InventoryReservationFailed, "out of stock")
    assert "payment_token" not in saga.state.data and "customer_email" not in saga.state.data


def test_payment_token_and_email_are_kept_only_until_their_step_answered():
    saga = Saga()
    saga.succeed_until("send_confirmation")
    assert "payment_token" not in saga.state.data and saga.state.data["customer_email"] == "ada@example.com"
    saga.reply(c.ConfirmationSent)
    assert "customer_email" not in saga.state.data
    timed_out = Saga()
    timed_out.reply(c.InventoryReserved)
    while timed_out.step("process_payment") == e.StepStatus.RUNNING:
        timed_out.until_deadline("process_payment")
    assert "payment_token" not in timed_out.state.data


def test_given_expect_reads_like_the_business_process():
    data = order_data()
    order = uuid.UUID(data["order_id"])
    saga = SagaScenario(order_saga(), data).expect(c.ReserveInventory)
    saga.reply(c.InventoryReserved(order_id=order)).expect(c.ProcessPayment)
    saga.reply(c.PaymentFailed(order_id=order, reason="declined")).expect(c.ReleaseInventory)
    saga.reply(c.InventoryReleased(order_id=order)).expect(c.CancelOrder)
    saga.reply(c.OrderCancelled(order_id=order)).expect()
    assert saga.status == e.SagaStatus.COMPENSATED and saga.state.failure_reason == "declined"


def test_engine_does_not_mutate_its_input():
    saga = Saga()
    state = saga.state
    ENGINE.on_reply(state, c.InventoryReserved(order_id=saga.order_id), T0, **genuine(state, c.InventoryReserved))
    assert state.step("reserve_inventory").status == e.StepStatus.RUNNING


def test_a_silent_step_gets_its_command_again_with_backoff_inside_its_budget():
    saga = Saga()
    saga.tick(3)
    assert saga.last_sent() is c.ReserveInventory and saga.last.history[0].event == "step_resent"
    saga.tick(5)
    first, second, third = [o for o in saga.sent if isinstance(o.message, c.ReserveInventory)]
    assert len({first.message_id, second.message_id, third.message_id}) == 3  # new outbox rows...
    assert first.message == second.message == third.message and first.attempt == third.attempt == 1  # ...one identity
    assert saga.step("reserve_inventory") == e.StepStatus.RUNNING
    assert (saga.state.step("reserve_inventory").deadline - T0).total_seconds() == 15  # no more resends: the budget
    saga.now += timedelta(seconds=2)
    saga.reply(c.InventoryReserved)  # the restarted participant answers one copy
    assert saga.step("reserve_inventory") == e.StepStatus.SUCCEEDED and saga.last_sent() is c.ProcessPayment


def test_a_resend_to_a_participant_whose_queue_is_backed_up_is_deferred_but_the_budget_still_ends():
    saga = Saga()
    participant = order_saga().steps[1].participant  # reserve_inventory's queue
    at = T0 + timedelta(seconds=3)
    assert ENGINE.due_resends(saga.state, at) == {participant}
    deferred = ENGINE.on_deadline(saga.state, at, queued={participant: 40})
    assert deferred.changed and not deferred.outgoing  # no copy behind the one still waiting
    assert [(h.event, h.step) for h in deferred.history] == [("step_resend_deferred", "reserve_inventory")]
    assert "40 messages waiting" in (deferred.history[0].detail or "")
    step = deferred.state.step("reserve_inventory")
    assert step.sends == 1 and step.status == e.StepStatus.RUNNING
    assert step.deadline == at + timedelta(seconds=3)  # looked at again after the same interval
    # Once the queue is empty and there is still no answer, the command is sent again.
    resent = ENGINE.on_deadline(deferred.state, step.deadline)
    assert [type(o.message) for o in resent.outgoing] == [c.ReserveInventory]
    # Deferred however long the queue stays backed up, the step still times out with its budget.
    state = deferred.state
    while state.step("reserve_inventory").status == e.StepStatus.RUNNING:
        deadline = state.step("reserve_inventory").deadline
        state = ENGINE.on_deadline(state, deadline, queued={participant: 40}).state
    assert (deadline - T0).total_seconds() == 15 and state.failure_reason == "reserve_inventory timed out"
    assert ENGINE.due_resends(state, deadline) == set()


def test_a_step_may_use_what_the_earlier_steps_left_of_the_saga_budget():
    saga = Saga()  # 30 s budget; 5 s least time for each of the 3 steps after reserve_inventory
    while saga.step("reserve_inventory") == e.StepStatus.RUNNING:
        saga.until_deadline("reserve_inventory")
    assert (saga.now - T0).total_seconds() == 15
    assert saga.state.failure_reason == "reserve_inventory timed out"
    assert sum(isinstance(o.message, c.ReserveInventory) for o in saga.sent) == 3  # 0, 3 and 8 s


def test_a_late_saga_still_gives_each_step_its_least_time():
    saga = Saga()
    saga.now += timedelta(seconds=29)  # everything before was slow
    saga.reply(c.InventoryReserved)
    while saga.step("process_payment") == e.StepStatus.RUNNING:
        saga.until_deadline("process_payment")
    assert (saga.now - saga.state.step("process_payment").started_at).total_seconds() == 5
    assert saga.state.failure_reason == "process_payment timed out"


def test_resends_go_out_at_once_but_silence_is_judged_only_up_to_the_cutoff():
    saga = Saga()
    resent = ENGINE.on_deadline(saga.state, T0 + timedelta(seconds=4), cutoff=T0)
    assert [type(o.message) for o in resent.outgoing] == [c.ReserveInventory]
    waiting = ENGINE.on_deadline(saga.state, T0 + timedelta(seconds=20), cutoff=T0 + timedelta(seconds=2))
    assert not waiting.changed and waiting.state.step("reserve_inventory").status == e.StepStatus.RUNNING
    early = ENGINE.on_deadline(saga.state, T0 + timedelta(seconds=20), cutoff=T0 + timedelta(seconds=14))
    assert not early.changed  # the resend point is read, the end of the budget is not yet
    # ... and it says until when there is nothing to judge, so the worker need not ask before.
    assert waiting.judge_after == early.judge_after == T0 + timedelta(seconds=15)
    judged = ENGINE.on_deadline(saga.state, T0 + timedelta(seconds=20), cutoff=T0 + timedelta(seconds=16))
    assert judged.state.step("reserve_inventory").status == e.StepStatus.COMPENSATING


def test_a_saga_that_never_started_cancels_its_order_and_escalates():
    saga_id, order_id = uuid.uuid4(), str(uuid.uuid4())
    t = ENGINE.settle_unstarted(saga_id, order_id, "saga could not start within 60s", T0)
    assert t.state.status == e.SagaStatus.COMPENSATING and t.state.failure_reason == "saga could not start within 60s"
    cancel, escalation = t.outgoing
    assert isinstance(cancel, e.Send) and isinstance(cancel.message, c.CancelOrder)
    assert cancel.message.reason == "saga could not start within 60s"
    assert escalation == e.Escalate(
        e.Escalation.START, "create_order", "saga could not start within 60s", message_id=escalation.message_id
    )
    # ... which the orchestrator raises as this system's SagaStartFailed
    raised = staged(t.state, escalation)
    assert isinstance(raised.message, c.SagaStartFailed) and raised.destination == "queue:saga-escalations"
    assert (str(raised.message.order_id), raised.message.saga_id) == (order_id, saga_id)
    assert [s.status for s in t.state.steps[1:]] == [e.StepStatus.PENDING] * 4  # nothing else ever ran
    done = ENGINE.on_reply(t.state, c.OrderCancelled(order_id=order_id), T0, **genuine(t.state, c.OrderCancelled))
    assert done.state.status == e.SagaStatus.COMPENSATED


def test_resolving_by_hand_tells_the_participant_and_reports_a_compensation_that_ran_anyway():
    saga = Saga()
    saga.succeed_until("fulfill_order")
    saga.fail(c.FulfillmentFailed)  # RefundPayment sent; the provider never answers
    saga.resolve("refunded by bank transfer", "ops")
    [settle] = saga.last.settlements
    assert (settle.participant, settle.step, settle.reason) == (
        "payment-commands",
        "process_payment",
        "refunded by bank transfer",
    )
    told = [o for o in saga.latest if isinstance(o.message, c.SettleStep)]
    assert [(o.step, o.destination, o.attempt) for o in told] == [("process_payment", "queue:payment-commands", 1)]
    quiet = ENGINE.on_settled(saga.state, "process_payment", False, saga.now)
    assert [h.event for h in quiet.history] == [e.HistoryEvent.SETTLEMENT_ACKNOWLEDGED] and not quiet.outgoing
    clash = ENGINE.on_settled(saga.state, "process_payment", True, saga.now)
    assert clash.history[0].event == "compensation_ran_before_settlement"
    [escalation] = clash.escalations
    assert (escalation.kind, escalation.step) == (e.Escalation.SETTLED_TWICE, "process_payment")
    raised = staged(saga.state, escalation)
    assert isinstance(raised.message, c.SettlementConflict) and raised.destination == "queue:saga-escalations"


def test_history_events_keep_the_values_stored_in_saga_history():
    """Existing rows, the console and the chaos harness read these strings: an enum member may
    be renamed, its value never."""
    assert {str(event) for event in e.HistoryEvent} == {
        "saga_started",
        "saga_start_failed",
        "saga_completed",
        "saga_compensated",
        "saga_needs_intervention",
        "step_started",
        "step_resent",
        "step_resend_deferred",
        "step_succeeded",
        "step_failed",
        "step_timed_out",
        "step_escalated",
        "step_compensated",
        "compensation_started",
        "compensation_sent",
        "compensation_timed_out",
        "compensation_failed",
        "operator_retry_step",
        "operator_retry_compensation",
        "operator_resolved",
        "operator_redrive",
        "settlement_sent",
        "settlement_acknowledged",
        "compensation_ran_before_settlement",
        "saga_held",
        "awaiting_operator",
        "saga_paused",
        "saga_resumed",
        "reply_ignored",
        "reply_refused",
    }
    assert all(e.HistoryEvent.reached(s) in e.HistoryEvent for s in e.FINAL_STATUSES)


def test_a_paused_saga_judges_no_deadline_and_on_resume_sends_what_is_due_with_its_budget_extended():
    saga = Saga()
    paused = ENGINE.pause(saga.state, T0 + timedelta(seconds=1), "ada", "repairing inventory")
    assert [(h.event, h.detail) for h in paused.history] == [("saga_paused", "by ada: repairing inventory")]
    quiet = ENGINE.on_deadline(paused.state, T0 + timedelta(seconds=60))
    assert not quiet.changed and quiet.state.step("reserve_inventory").status == e.StepStatus.RUNNING
    with pytest.raises(ValueError, match="paused already"):
        ENGINE.pause(paused.state, T0 + timedelta(seconds=2), "bob", "")
    resumed = ENGINE.resume(paused.state, T0 + timedelta(seconds=61), "ada")
    assert resumed.state.paused_at is None and resumed.state.paused_seconds == 60
    assert [type(o.message) for o in resumed.outgoing] == [c.ReserveInventory]  # sent again at once
    assert ENGINE.budget_end(resumed.state, "reserve_inventory") == T0 + timedelta(seconds=15 + 60)
    with pytest.raises(ValueError, match="not paused"):
        ENGINE.resume(resumed.state, T0 + timedelta(seconds=62), "ada")


def test_a_saga_held_at_its_start_is_paused_until_resumed():
    saga = Saga()
    held = ENGINE.hold(saga.state, T0, "definition order paused by ada: repair")
    assert held.state.paused_at == T0 and held.state.pause_kind == "definition"
    assert [h.event for h in held.history] == ["saga_held"]
    resumed = ENGINE.resume(held.state, T0 + timedelta(seconds=5), "ada (definition resumed)")
    assert [type(o.message) for o in resumed.outgoing] == [c.ReserveInventory]


def genuine(state: e.SagaState, reply_type: type) -> dict:
    """What a genuine reply of ``reply_type`` to the saga's latest command carries."""
    causation_id, participant = ENGINE.genuine_origin(state, reply_type)
    return {"causation_id": causation_id, "participant": participant}
