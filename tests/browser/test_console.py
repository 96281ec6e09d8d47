"""An operator's session in the console, in a real browser."""

from __future__ import annotations

import http.server
import threading

import httpx
import pytest
from selenium.webdriver.common.by import By

from stack.infra import free_port
from tests.browser.conftest import HOSTILE_NAME
from tests.browser.driver import TOKEN, sign_in, visible, wait
from tests.conftest import eventually

HOSTILE_REASON = '<script>document.title="pwned"</script><img id="injected" src="x" onerror="document.title=\'pwned\'">'


def page(console, path: str = "") -> str:
    return console.url("orchestrator") + "/console" + path


def text(chrome, css: str) -> str:
    return chrome.find_element(By.CSS_SELECTOR, css).text


def live_text(chrome, css: str) -> str:
    """Text on the overview, whose live part is replaced every second."""
    return wait(chrome, lambda c: text(c, css))


def live_click(chrome, css: str) -> None:
    wait(chrome, lambda c: c.find_element(By.CSS_SELECTOR, css).click() or True)


def timeline(chrome) -> list[tuple[str, str, str]]:
    """(event, step, detail) of every row of the timeline, in order."""
    return [
        (row.get_attribute("data-event"), row.get_attribute("data-step"), row.find_element(By.CSS_SELECTOR, ".detail").text)
        for row in chrome.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    ]


def confirm(chrome) -> None:
    wait(chrome, visible("#confirm"))
    chrome.find_element(By.ID, "confirm-ok").click()


def test_only_the_sign_in_shows_until_the_operator_token_is_given(console, outcomes, browser):
    saga_id = outcomes["compensated"][0]["saga_id"]
    browser.get(page(console, f"/sagas/{saga_id}"))
    assert browser.find_elements(By.ID, "token") and not browser.find_elements(By.ID, "timeline")
    assert "no delivery to AQ" not in browser.page_source  # the saga's failure reason
    sign_in(browser, console, token="not-the-token")
    assert "not a valid operator token" in text(browser, ".error")
    assert not browser.get_cookie("saga_console")

    sign_in(browser, console, name="ada")
    wait(browser, visible("#attention"))
    assert "ada" in text(browser, ".who") and "operator" in text(browser, ".who")
    cookie = browser.get_cookie("saga_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # out of reach of any script
    # The sagas that need a person are at the top, and the escalations queue shows its depth.
    attention = live_text(browser, "#attention")
    for placed in outcomes["needs_intervention"]:
        assert placed["saga_id"][:8] in attention
    wait(browser, lambda c: text(c, "[data-queue='saga-escalations'] .depth") not in ("0", "?"))  # escalations counted


def test_a_compensated_saga_is_found_from_the_overview_with_its_failed_step_and_compensations(console, outcomes, browser):
    saga_id = outcomes["compensated"][0]["saga_id"]
    sign_in(browser, console)
    wait(browser, visible("#counts"))
    live_click(browser, "table[data-definition='order'] a[data-count='compensated']")
    wait(browser, visible("#saga-list"))
    assert "status=compensated" in browser.current_url
    browser.find_element(By.CSS_SELECTOR, f"a[data-saga='{saga_id}']").click()
    wait(browser, visible("#timeline"))

    assert text(browser, "#saga-status") == "compensated"
    failed = browser.find_element(By.CSS_SELECTOR, "[data-node='step:fulfill_order']")
    assert failed.get_attribute("data-status") == "failed"
    assert failed.find_element(By.TAG_NAME, "rect").value_of_css_property("stroke") == "rgb(220, 38, 38)"
    undone = ["process_payment", "reserve_inventory", "create_order"]
    for step in undone:
        node = browser.find_element(By.CSS_SELECTOR, f"[data-node='undo:{step}']")
        assert node.get_attribute("data-status") == "compensated"
    assert browser.find_element(By.CSS_SELECTOR, "[data-node='undo:fulfill_order']").get_attribute("data-status") == "not_run"
    events = timeline(browser)
    assert [step for event, step, _ in events if event == "compensation_sent"] == undone
    assert [step for event, step, _ in events if event == "step_compensated"] == undone
    assert events[-1][0] == "saga_compensated"


def test_resolving_by_hand_compensates_the_saga_and_keeps_the_reason_with_the_actor(console, console_shop, outcomes, browser):
    saga_id = outcomes["needs_intervention"][0]["saga_id"]
    sign_in(browser, console, name="grace")
    browser.get(page(console, f"/sagas/{saga_id}"))
    wait(browser, visible("#resolve-form"))
    assert (
        browser.find_element(By.CSS_SELECTOR, "[data-node='undo:process_payment']").get_attribute("data-status")
        == "compensation_failed"
    )
    browser.find_element(By.ID, "reason").send_keys("refunded by bank transfer, ticket 4711")
    browser.find_element(By.ID, "resolve").click()
    wait(browser, visible("#confirm"))
    browser.find_element(By.ID, "confirm-cancel").click()  # asked first: cancelling does nothing
    assert console_shop.saga(saga_id)["status"] == "needs_intervention"
    browser.find_element(By.ID, "resolve").click()
    confirm(browser)

    wait(browser, lambda c: "Resolved by hand" in c.find_element(By.CSS_SELECTOR, ".notice").text)
    assert text(browser, "#saga-status") == "compensated"
    resolved = [detail for event, _, detail in timeline(browser) if event == "operator_resolved"]
    assert resolved == ["by grace: refunded by bank transfer, ticket 4711"]
    # The same history the saga API and sagactl read.
    history = console_shop.saga(saga_id)["history"]
    assert [h["detail"] for h in history if h["event"] == "operator_resolved"] == resolved


@pytest.fixture
def hostile_site():
    """A page on another origin that posts the resolve form on its own, as a CSRF attack would."""
    forms: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = forms.get(self.path, "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield forms, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_actions_without_the_session_csrf_token_are_refused(console, console_shop, outcomes, browser, hostile_site):
    saga_id = outcomes["needs_intervention"][1]["saga_id"]
    sign_in(browser, console)
    wait(browser, visible("#attention"))
    forms, origin = hostile_site
    action = page(console, f"/sagas/{saga_id}/resolve")
    forms["/attack"] = (
        f'<form id="f" method="post" action="{action}"><input name="reason" value="closed by an attacker">'
        '</form><script>document.getElementById("f").submit()</script>'
    )
    browser.get(origin + "/attack")
    wait(browser, visible("#problem"))
    assert "did not come from this console session" in text(browser, "#problem")

    browser.get(page(console, f"/sagas/{saga_id}"))
    wait(browser, visible("#resolve-form"))
    browser.execute_script("document.querySelector('#resolve-form [name=csrf]').value = 'forged'")
    browser.find_element(By.ID, "reason").send_keys("closed with a forged token")
    browser.find_element(By.ID, "resolve").click()
    confirm(browser)
    wait(browser, visible("#problem"))
    assert "did not come from this console session" in text(browser, "#problem")

    saga = console_shop.saga(saga_id)
    assert saga["status"] == "needs_intervention"
    assert not [h for h in saga["history"] if h["event"].startswith("operator_")]
    # Without the browser's cookie the same post is only a sign-in page.
    assert httpx.post(action, data={"reason": "no session"}).status_code == 401


def test_a_hostile_resolve_reason_stays_text(console, console_shop, outcomes, browser):
    saga_id = outcomes["needs_intervention"][1]["saga_id"]
    sign_in(browser, console)
    browser.get(page(console, f"/sagas/{saga_id}"))
    wait(browser, visible("#resolve-form"))
    browser.find_element(By.ID, "reason").send_keys(HOSTILE_REASON)
    browser.find_element(By.ID, "resolve").click()
    confirm(browser)
    wait(browser, lambda c: c.find_element(By.ID, "saga-status").text == "compensated")

    resolved = [detail for event, _, detail in timeline(browser) if event == "operator_resolved"]
    assert resolved == [f"by ada: {HOSTILE_REASON}"]
    assert browser.find_elements(By.ID, "injected") == []
    assert browser.title != "pwned" and "Saga" in browser.title


def test_the_overview_counts_follow_changes_without_a_reload(console, console_shop, outcomes, browser):
    saga_id = outcomes["needs_intervention"][2]["saga_id"]
    sign_in(browser, console)
    wait(browser, visible("#counts"))
    counted = "table[data-definition='order'] a[data-count='{}']"
    before = {s: int(live_text(browser, counted.format(s))) for s in ("needs_intervention", "compensated")}
    browser.execute_script("window.notReloaded = true")
    response = httpx.post(
        console.url("orchestrator") + f"/operator/sagas/{saga_id}/resolve",
        json={"reason": "refunded by bank transfer", "actor": "sagactl"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    wait(browser, lambda c: int(text(c, counted.format("compensated"))) == before["compensated"] + 1, timeout=15)
    assert int(live_text(browser, counted.format("needs_intervention"))) == before["needs_intervention"] - 1
    assert browser.execute_script("return window.notReloaded") is True


def test_a_hostile_shipping_name_stays_text(console, console_shop, browser):
    """The saga holds the address only until fulfill_order has answered, so look while that
    step waits on a stopped fulfillment_svc."""
    console.stop_service("fulfillment_svc")
    try:
        body = console_shop.order_body(console_shop.new_sku(5))
        body["shipping_address"]["name"] = HOSTILE_NAME
        placed = console_shop.place(body)
        eventually(
            lambda: (
                (s := console_shop.saga(placed["saga_id"]))
                and any(step["name"] == "fulfill_order" and step["status"] == "running" for step in s["steps"])
            ),
            timeout=20,
            what="fulfill_order waiting",
        )
        sign_in(browser, console)
        browser.get(page(console, f"/sagas/{placed['saga_id']}"))
        assert text(browser, "#ship-to").startswith(HOSTILE_NAME)
        assert browser.find_elements(By.ID, "injected") == []
        assert browser.title != "pwned" and "Saga" in browser.title
    finally:
        console.start_service("fulfillment_svc")
