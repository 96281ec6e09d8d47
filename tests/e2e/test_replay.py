"""``sagactl replay`` over the sagas of this test run: the same code replays them on the same
path; a definition whose steps were changed without a new version is caught before a deploy."""

from __future__ import annotations

import pytest

from orchestrator.cancellation_saga import cancellation_saga
from orchestrator.order_saga import order_saga
from tests.e2e.conftest import run_sagactl
from tests.unit.test_saga_versions import ADDED, with_an_added_step

pytestmark = pytest.mark.e2e
CHANGED_IN_PLACE = (with_an_added_step(order_saga()), cancellation_saga())
"""A release that added a step to the order saga but forgot to make it version 2."""


def test_replay_reports_no_divergence_on_the_same_code_and_the_one_a_forgotten_version_causes(stack, shop):
    placed = [shop.place(shop.order_body(shop.new_sku(10))), shop.place(shop.order_body("NO-SUCH-SKU"))]
    for order in placed:
        shop.settled(order)
    same = run_sagactl(stack, "replay", "--definition", "order", "--last", "20")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "0 would take another path" in same.stdout and all(o["saga_id"] in same.stdout for o in placed)

    changed = run_sagactl(stack, "replay", "--saga", placed[0]["saga_id"], "--definitions", f"{__name__}:CHANGED_IN_PLACE")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert f"step 2 started: the saga did start process_payment, this code would do start {ADDED}" in changed.stdout
    assert "1 sagas replayed, 1 would take another path" in changed.stdout
