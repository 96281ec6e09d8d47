"""The console's actions over time, through a real server: pausing and resuming a saga from its
page, a definition from the page for many sagas, and a bulk action listed before it acts."""

from __future__ import annotations

import pytest

from tests.conftest import eventually
from tests.e2e.test_console_http import csrf
from tests.e2e.test_console_http import signed_in as signed_in  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e


def test_a_saga_is_paused_and_resumed_from_its_page_each_recorded_with_the_operator(signed_in, shop):
    placed = shop.place(shop.order_body(shop.new_sku(10)))
    shop.settled(placed)  # completed: nothing to pause
    assert 'id="pause"' not in signed_in.get(f"/console/sagas/{placed['saga_id']}").text
    refused = signed_in.post(f"/console/sagas/{placed['saga_id']}/pause", data={"csrf": csrf(signed_in), "reason": "x"})
    assert refused.status_code == 409 and "nothing to pause" in refused.text

    sku = shop.new_sku(10)
    shop.stack.stop_service("inventory_svc")
    try:
        running = shop.place(shop.order_body(sku))
        eventually(lambda: shop.saga(running["saga_id"]), what="the saga started")
        page = signed_in.get(f"/console/sagas/{running['saga_id']}").text
        assert 'id="pause"' in page
        paused = signed_in.post(
            f"/console/sagas/{running['saga_id']}/pause", data={"csrf": csrf(signed_in), "reason": "checking stock"}
        )
        assert paused.status_code == 303
        page = signed_in.get(paused.headers["location"]).text
        assert "Paused: no command is sent" in page and ">Resume<" in page
        resumed = signed_in.post(f"/console/sagas/{running['saga_id']}/resume", data={"csrf": csrf(signed_in)})
        assert resumed.status_code == 303 and "Resumed" in signed_in.get(resumed.headers["location"]).text
    finally:
        shop.stack.start_service("inventory_svc")
    _, saga = shop.settled(running)
    assert saga["status"] == "completed"
    paused_by = [h["detail"] for h in saga["history"] if h["event"] in ("saga_paused", "saga_resumed")]
    assert len(paused_by) == 2 and "checking stock" in paused_by[0] and all("by " in d for d in paused_by)


def test_many_sagas_page_pauses_and_resumes_a_definition_and_lists_a_bulk_action_before_it_acts(signed_in, shop):
    page = signed_in.get("/console/bulk")
    assert page.status_code == 200 and 'id="pause-order"' in page.text
    held = signed_in.post("/console/definitions/order/pause", data={"csrf": csrf(signed_in), "reason": "repairing"})
    try:
        assert held.status_code == 200 and "held at their start" in held.text and 'id="resume-order"' in held.text
        placed = shop.place(shop.order_body(shop.new_sku(5)))
        eventually(
            lambda: "saga_held" in [h["event"] for h in (shop.saga(placed["saga_id"]) or {"history": []})["history"]],
            what="the new saga held",
        )
    finally:
        resumed = signed_in.post("/console/definitions/order/resume", data={"csrf": csrf(signed_in)})
    assert resumed.status_code == 200 and "held saga(s) running" in resumed.text
    _, saga = shop.settled(placed)
    assert saga["status"] == "completed"
    listed = signed_in.post(
        "/console/bulk", data={"csrf": csrf(signed_in), "action": "retry", "status": "needs_intervention", "run": ""}
    )
    assert listed.status_code == 200 and "(a dry run)" in listed.text
    refused = signed_in.post("/console/bulk", data={"csrf": csrf(signed_in), "action": "resolve", "run": "1", "reason": ""})
    assert refused.status_code == 422 and "needs a reason" in refused.text
