"""The order_cancellation saga with no I/O, through the same given/expect helpers as the order saga."""

from __future__ import annotations

import pytest

from contracts import messages as c
from orchestrator.engine import SagaStatus, StepStatus
from orchestrator.settings import StepTimeouts
from tests.factories import Saga, cancellation_data, cancellation_under_test

AFTER_PIVOT = [c.ScheduledShipmentCancelled, c.ChargeRefunded, c.ReservedStockReturned, c.ConfirmedOrderCancelled]


def test_each_step_in_order_then_completed_with_nothing_left_of_the_address():
    saga = cancellation_under_test().expect(c.CancelScheduledShipment)
    saga.reply(c.ScheduledShipmentCancelled)
    saga.expect(c.RefundCharge)
    saga.reply(c.ChargeRefunded)
    saga.expect(c.ReturnReservedStock)
    saga.reply(c.ReservedStockReturned)
    saga.expect(c.CancelConfirmedOrder)
    assert saga.sent[-1].message.reason == "cancelled by customer"
    saga.reply(c.ConfirmedOrderCancelled)
    saga.expect(c.SendCancellationNotice)
    assert saga.sent[-1].message.customer_email == "ada@example.com"
    saga.reply(c.CancellationNoticeSent)
    saga.expect()
    assert saga.status == SagaStatus.COMPLETED and "customer_email" not in saga.state.data
    assert saga.state.subject == str(saga.order_id) and saga.state.definition == "order_cancellation"


def test_a_dispatched_parcel_refuses_it_and_the_customer_is_told():
    saga = cancellation_under_test()
    saga.fail(c.ShipmentAlreadyDispatched, "shipment already dispatched")
    saga.expect(c.SendCancellationRefusal)
    assert saga.status == SagaStatus.COMPENSATED and saga.state.failed_step == "cancel_scheduled_shipment"
    refusal = saga.sent[-1].message
    assert refusal.reason == "shipment already dispatched" and refusal.customer_email == "ada@example.com"
    assert saga.sent[-1].destination == "queue:notification-commands" and not saga.sent[-1].expects_reply
    assert [s.status for s in saga.state.steps[1:]] == [StepStatus.PENDING] * 4


def test_a_rejected_refund_escalates_and_the_other_steps_are_still_done():
    saga = cancellation_under_test()
    saga.reply(c.ScheduledShipmentCancelled)
    saga.fail(c.ChargeRefundFailed, "refund rejected by the payment provider")
    saga.expect(c.CompensationEscalated, c.ReturnReservedStock)
    escalation = saga.sent[-2].message
    assert (escalation.step, escalation.command["type"], escalation.subject) == (
        "refund_charge",
        "RefundCharge",
        str(saga.order_id),
    )
    saga.succeed(c.ReservedStockReturned, c.ConfirmedOrderCancelled, c.CancellationNoticeSent)
    assert saga.status == SagaStatus.NEEDS_INTERVENTION
    assert saga.step("refund_charge") == StepStatus.ESCALATED
    assert not [o for o in saga.sent if o.step and "compensation" in o.step]


def test_after_the_pivot_a_silent_step_is_resent_then_escalated_when_its_budget_is_spent_never_undone():
    saga = cancellation_under_test()
    saga.reply(c.ScheduledShipmentCancelled)
    while saga.step("refund_charge") == StepStatus.RUNNING:
        saga.until_deadline("refund_charge")
    sends = [o for o in saga.sent if isinstance(o.message, c.RefundCharge)]
    assert len(sends) > 2 and len({o.attempt for o in sends}) == 1  # resends of one attempt
    assert saga.step("refund_charge") == StepStatus.ESCALATED and saga.last_sent() is c.ReturnReservedStock
    assert not any(isinstance(o.message, c.ReinstateShipment) for o in saga.sent)


def test_an_escalated_step_that_answers_late_is_done_after_all_and_the_saga_waits_for_its_operator():
    saga = cancellation_under_test()
    saga.reply(c.ScheduledShipmentCancelled)
    saga.fail(c.ChargeRefundFailed)
    saga.succeed(c.ReservedStockReturned, c.ConfirmedOrderCancelled, c.CancellationNoticeSent)
    assert saga.status == SagaStatus.NEEDS_INTERVENTION
    t = saga.reply(c.ChargeRefunded)
    # The step's own status says what happened; the saga was handed to a person, and only
    # their recorded action ends it.
    assert saga.step("refund_charge") == StepStatus.SUCCEEDED and saga.status == SagaStatus.NEEDS_INTERVENTION
    assert [h.event for h in t.history][-1] == "awaiting_operator"
    saga.resolve("the refund went through after all", "ada")
    assert saga.status == SagaStatus.COMPLETED


def test_an_operator_retries_an_escalated_step_or_resolves_it_without_undoing_anything():
    retried = cancellation_under_test()
    retried.reply(c.ScheduledShipmentCancelled)
    retried.fail(c.ChargeRefundFailed)
    retried.succeed(c.ReservedStockReturned, c.ConfirmedOrderCancelled, c.CancellationNoticeSent)
    retried.retry_compensation("refund_charge")
    retried.expect(c.RefundCharge)
    assert retried.status == SagaStatus.RUNNING
    retried.reply(c.ChargeRefunded)
    assert retried.status == SagaStatus.COMPLETED

    resolved = cancellation_under_test()
    resolved.reply(c.ScheduledShipmentCancelled)
    resolved.fail(c.ChargeRefundFailed)
    resolved.succeed(c.ReservedStockReturned, c.ConfirmedOrderCancelled, c.CancellationNoticeSent)
    resolved.resolve("refunded by bank transfer")
    resolved.expect()
    assert resolved.status == SagaStatus.COMPLETED and resolved.step("cancel_scheduled_shipment") == StepStatus.SUCCEEDED


def test_a_pivot_that_times_out_is_reinstated_and_the_cancellation_refused():
    saga = cancellation_under_test()
    while saga.step("cancel_scheduled_shipment") == StepStatus.RUNNING:
        saga.until_deadline("cancel_scheduled_shipment")
    assert saga.latest[0].message.__class__ is c.ReinstateShipment
    # Not final while the reinstatement is unacknowledged: only its answer ends the saga.
    assert saga.status == SagaStatus.COMPENSATING
    saga.reply(c.ShipmentReinstated)
    assert saga.status == SagaStatus.COMPENSATED and saga.last_sent() is c.SendCancellationRefusal
    assert saga.sent[-1].message.reason == "cancel_scheduled_shipment timed out"


def test_timeouts_are_set_by_step_name_in_either_saga():
    from orchestrator.main import DEFINITIONS

    order, _, cancellation = StepTimeouts.model_validate({"refund_charge": "2", "fulfill_order": 3, "saga_budget": 9}).apply(
        *DEFINITIONS
    )
    assert cancellation.step("refund_charge").timeout.total_seconds() == 2
    assert order.step("fulfill_order").timeout.total_seconds() == 3
    assert order.budget == cancellation.budget and order.budget.total_seconds() == 9
    with pytest.raises(ValueError, match="unknown steps: refund"):
        StepTimeouts.model_validate({"refund": 1}).apply(*DEFINITIONS)


def test_a_reply_of_one_saga_changes_nothing_in_the_other():
    saga = Saga(cancellation_under_test().engine.definition, cancellation_data())
    t = saga.reply(c.InventoryReserved)
    assert not t.outgoing and t.history[0].event == "reply_ignored"


FORMER = {"cancel_scheduled_shipment": "cancel_shipment", "refund_charge": "refund_payment"}


def started_before_the_rename() -> Saga:
    """A cancellation that started when its steps had their former names, read back after."""
    saga = cancellation_under_test()
    for step in saga.state.steps:
        step.name = FORMER.get(step.name, {"return_reserved_stock": "release_inventory"}.get(step.name, step.name))
    for sent in saga.sent:  # what it had sent then named the step so too
        object.__setattr__(sent, "step", FORMER.get(sent.step, sent.step))
    saga.history.clear()  # written then
    return saga


def test_a_saga_started_before_a_rename_runs_to_its_end_under_the_names_it_started_with():
    saga = started_before_the_rename()
    saga.reply(c.ScheduledShipmentCancelled)
    saga.fail(c.ChargeRefundFailed, "refund rejected")
    assert [(o.step, type(o.message)) for o in saga.latest] == [
        ("refund_payment", c.CompensationEscalated),
        ("release_inventory", c.ReturnReservedStock),
    ]
    assert saga.step("refund_payment") == StepStatus.ESCALATED
    saga.retry_compensation("refund_payment").expect(c.RefundCharge)
    assert saga.latest[0].step == "refund_payment"
    saga.succeed(c.ChargeRefunded, c.ReservedStockReturned, c.ConfirmedOrderCancelled, c.CancellationNoticeSent)
    assert saga.status == SagaStatus.COMPLETED
    named = {h.step for h in saga.history if h.step}
    assert named >= set(FORMER.values()) | {"release_inventory"}
    assert not named & {"cancel_scheduled_shipment", "refund_charge", "return_reserved_stock"}


def test_a_pivot_started_before_the_rename_times_out_under_its_former_name():
    saga = started_before_the_rename()
    while saga.step("cancel_shipment") == StepStatus.RUNNING:
        saga.until_deadline("cancel_shipment")
    assert saga.state.failed_step == "cancel_shipment" and saga.latest[0].step == "cancel_shipment"
    assert saga.status == SagaStatus.COMPENSATING  # until the reinstatement is acknowledged
    saga.reply(c.ShipmentReinstated)
    assert saga.status == SagaStatus.COMPENSATED


def test_a_former_step_name_still_sets_its_least_time():
    from orchestrator.main import DEFINITIONS

    *_, cancellation = StepTimeouts.model_validate({"refund_payment": 2}).apply(*DEFINITIONS)
    assert cancellation.step("refund_charge").timeout.total_seconds() == 2
