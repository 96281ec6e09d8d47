"""Replay: recorded saga histories walked through a definition; the first divergence reported."""

from __future__ import annotations

import dataclasses

from contracts import messages as c
from orchestrator.cancellation_saga import cancellation_saga
from orchestrator.order_saga import order_saga
from orchestrator.replay import replay
from tests import factories
from tests.factories import order_data
from tests.unit.test_saga_versions import ADDED, with_an_added_step


def recorded(saga) -> list[tuple[str, str | None]]:
    return [(str(h.event), h.step) for h in saga.history]


def completed():
    saga = factories.Saga(order_saga(), order_data())
    saga.reply(c.InventoryReserved)
    saga.reply(c.PaymentProcessed)
    saga.reply(c.OrderFulfilled)
    saga.reply(c.ConfirmationSent)
    assert saga.state.status == "completed"
    return saga


def declined():
    saga = factories.Saga(order_saga(), order_data())
    saga.reply(c.InventoryReserved)
    saga.fail(c.PaymentFailed, "declined")
    saga.reply(c.InventoryReleased)
    saga.reply(c.OrderCancelled)
    assert saga.state.status == "compensated"
    return saga


def timed_out():
    saga = factories.Saga(order_saga(), order_data())
    saga.reply(c.InventoryReserved)
    while saga.state.step("process_payment").status == "running":
        saga.until_deadline("process_payment")
    return saga


def test_on_the_same_code_no_saga_diverges():
    for saga in (completed(), declined(), timed_out()):
        final = saga.state.status not in ("running", "compensating")
        assert replay(order_saga(), recorded(saga), final=final) is None


def test_a_running_saga_has_not_diverged_by_what_it_has_not_done_yet():
    saga = factories.Saga(order_saga(), order_data())
    saga.reply(c.InventoryReserved)
    assert replay(order_saga(), recorded(saga), final=False) is None


def test_a_definition_changed_without_a_new_version_diverges_where_the_sagas_would_go_wrong():
    changed = with_an_added_step(order_saga())  # still version 1
    divergence = replay(changed, recorded(completed()), final=True)
    assert divergence is not None and divergence.position == "step 2 started"
    assert (divergence.recorded, divergence.would) == ("start process_payment", f"start {ADDED}")
    assert "the saga did start process_payment, this code would do start return_reserved_stock" in str(divergence)
    # A compensated saga diverges there too, before its compensations are even compared.
    assert replay(changed, recorded(declined()), final=True).position == "step 2 started"


def test_compensations_in_another_order_diverge():
    reordered = order_saga()
    steps = list(reordered.steps)
    steps[1], steps[2] = steps[2], steps[1]  # payment before inventory
    divergence = replay(dataclasses.replace(reordered, steps=tuple(steps)), recorded(completed()), final=True)
    assert divergence is not None and divergence.position == "step 1 started"


def test_a_step_the_code_no_longer_knows_diverges():
    shorter = order_saga()
    without = dataclasses.replace(shorter, steps=tuple(s for s in shorter.steps if s.name != "fulfill_order"))
    divergence = replay(without, recorded(completed()), final=True)
    assert divergence is not None and divergence.would == "no such step"


def test_the_cancellation_saga_replays_on_itself():
    saga = factories.Saga(cancellation_saga(), factories.cancellation_data())
    saga.reply(c.ScheduledShipmentCancelled)
    saga.reply(c.ChargeRefunded)
    assert replay(cancellation_saga(), recorded(saga), final=False) is None
    assert replay(order_saga(), recorded(saga), final=False).would == "no such step"
