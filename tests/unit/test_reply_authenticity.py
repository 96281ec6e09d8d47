"""A reply is the answer to a command, or nothing: the engine takes a reply only when it names
one of the sends of its step's outstanding command as its causation and comes from that step's
participant. Anything else is recorded as refused and moves nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

from contracts import messages as c
from orchestrator import engine as e
from orchestrator.order_saga import order_saga
from tests.factories import T0, order_data, reply

ENGINE = e.SagaEngine(order_saga())


def at_payment() -> tuple[e.SagaState, uuid.UUID]:
    """A saga waiting on process_payment, and the order it is about."""
    data = order_data()
    order_id = uuid.UUID(data["order_id"])
    state = ENGINE.start(uuid.uuid4(), data, T0).state
    causation, participant = ENGINE.genuine_origin(state, c.InventoryReserved)
    state = ENGINE.on_reply(
        state, c.InventoryReserved(order_id=order_id), T0, causation_id=causation, participant=participant
    ).state
    assert state.step("process_payment").status == e.StepStatus.RUNNING
    return state, order_id


def refused(t: e.Transition) -> list[str]:
    return [h.detail or "" for h in t.history if h.event == e.HistoryEvent.REPLY_REFUSED]


def test_a_reply_naming_no_command_of_its_step_is_refused_and_moves_nothing():
    state, order_id = at_payment()
    forged = reply(c.PaymentProcessed, order_id)
    t = ENGINE.on_reply(state, forged, T0 + timedelta(seconds=1), causation_id=uuid.uuid4(), participant="payment-commands")
    assert t.state.step("process_payment").status == e.StepStatus.RUNNING
    assert not t.outgoing and refused(t) and "no command of this step" in refused(t)[0]
    assert t.changed  # the refusal is written to the history
    # Without any causation, likewise.
    none = ENGINE.on_reply(state, forged, T0, causation_id=None, participant="payment-commands")
    assert none.state.step("process_payment").status == e.StepStatus.RUNNING and refused(none)


def test_a_reply_with_the_right_causation_from_another_participant_is_refused():
    state, order_id = at_payment()
    causation, _ = ENGINE.genuine_origin(state, c.PaymentProcessed)
    t = ENGINE.on_reply(state, reply(c.PaymentProcessed, order_id), T0, causation_id=causation, participant="inventory-commands")
    assert t.state.step("process_payment").status == e.StepStatus.RUNNING and not t.outgoing
    assert "claims to come from inventory-commands, not payment-commands" in refused(t)[0]
    anonymous = ENGINE.on_reply(state, reply(c.PaymentProcessed, order_id), T0, causation_id=causation, participant=None)
    assert refused(anonymous) and not anonymous.outgoing


def test_a_reply_of_another_saga_replayed_is_refused():
    state, order_id = at_payment()
    other, _ = at_payment()
    their_causation, participant = ENGINE.genuine_origin(other, c.PaymentProcessed)
    t = ENGINE.on_reply(state, reply(c.PaymentProcessed, order_id), T0, causation_id=their_causation, participant=participant)
    assert t.state.step("process_payment").status == e.StepStatus.RUNNING and refused(t)


def test_the_genuine_reply_to_any_resend_counts_and_a_real_failure_still_follows_a_refused_forgery():
    state, order_id = at_payment()
    first, participant = ENGINE.genuine_origin(state, c.PaymentFailed)
    resent = ENGINE.on_deadline(state, T0 + timedelta(seconds=4)).state  # no reply yet: sent again
    assert len(resent.step("process_payment").command_ids) == 2 and resent.step("process_payment").sends == 2
    forged = ENGINE.on_reply(resent, reply(c.PaymentProcessed, order_id), T0, causation_id=uuid.uuid4(), participant=participant)
    real = ENGINE.on_reply(
        forged.state, reply(c.PaymentFailed, order_id), T0 + timedelta(seconds=5), causation_id=first, participant=participant
    )
    assert real.state.step("process_payment").status == e.StepStatus.FAILED
    assert [type(s.message) for s in real.sends] == [c.ReleaseInventory]


def test_compensation_replies_must_answer_a_compensation_not_the_action():
    state, order_id = at_payment()
    action, participant = ENGINE.genuine_origin(state, c.PaymentProcessed)
    failed = ENGINE.on_reply(state, reply(c.PaymentFailed, order_id), T0, causation_id=action, participant=participant)
    inventory = failed.state.step("reserve_inventory")
    assert inventory.status == e.StepStatus.COMPENSATING and len(inventory.compensation_ids) == 1
    reserve_action = inventory.command_ids[0]
    wrong = ENGINE.on_reply(
        failed.state,
        c.InventoryReleased(order_id=order_id),
        T0,
        causation_id=uuid.UUID(reserve_action),
        participant="inventory-commands",
    )
    assert wrong.state.step("reserve_inventory").status == e.StepStatus.COMPENSATING and refused(wrong)
    right = ENGINE.on_reply(
        failed.state,
        c.InventoryReleased(order_id=order_id),
        T0,
        causation_id=uuid.UUID(inventory.compensation_ids[0]),
        participant="inventory-commands",
    )
    assert right.state.step("reserve_inventory").status == e.StepStatus.COMPENSATED


def test_a_saga_whose_sends_were_recorded_by_the_previous_release_takes_its_replies_on_the_sender_alone():
    """The previous release kept no command ids: during that one upgrade, a step whose sends it
    made (counted in ``sends``, not in ``command_ids``) takes a reply from its participant."""
    state, order_id = at_payment()
    step = state.step("process_payment")
    step.command_ids = []  # as the previous release left it
    taken = ENGINE.on_reply(state, reply(c.PaymentProcessed, order_id), T0, causation_id=None, participant="payment-commands")
    assert taken.state.step("process_payment").status == e.StepStatus.SUCCEEDED
    elsewhere = ENGINE.on_reply(state, reply(c.PaymentProcessed, order_id), T0, causation_id=None, participant="order-commands")
    assert elsewhere.state.step("process_payment").status == e.StepStatus.RUNNING and refused(elsewhere)
