"""The console over plain HTTP: what it shows without a session, its cookie, its refusals."""

from __future__ import annotations

import base64
import re
import uuid

import httpx
import pytest

from contracts import messages as c
from messaging.envelope import Envelope
from tests.conftest import eventually
from tests.e2e.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.e2e
TOKEN = OPERATOR_TOKEN


@pytest.fixture
def anonymous(stack):
    with httpx.Client(base_url=stack.url("orchestrator"), timeout=30) as client:
        yield client


@pytest.fixture
def signed_in(stack):
    with httpx.Client(base_url=stack.url("orchestrator"), timeout=30) as client:
        response = client.post("/console/sign-in", data={"token": TOKEN, "name": "ada", "next": "/console/sagas"})
        assert response.status_code == 303 and response.headers["location"] == "/console/sagas"
        yield client


def csrf(client) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/console").text).group(1)


UNKNOWN_SAGA = uuid.uuid5(uuid.NAMESPACE_URL, "test-console/unknown-saga")  # the same in every pytest -n process


@pytest.mark.parametrize("path", ["/console", "/console/sagas", f"/console/sagas/{UNKNOWN_SAGA}", "/console/live"])
def test_without_a_session_every_page_is_the_sign_in(anonymous, path):
    response = anonymous.get(path)
    assert response.status_code == 401
    assert 'id="timeline"' not in response.text and 'id="counts"' not in response.text
    if path != "/console/live":
        assert 'name="token"' in response.text


def test_signing_in_needs_the_operator_token_and_sets_a_strict_http_only_cookie(anonymous):
    refused = anonymous.post("/console/sign-in", data={"token": "wrong", "name": "eve"})
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    accepted = anonymous.post("/console/sign-in", data={"token": TOKEN, "name": "ada", "next": "https://evil.example/"})
    assert accepted.status_code == 303 and accepted.headers["location"] == "/console"  # never sent elsewhere
    cookie = accepted.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert "secure" not in cookie  # on a loopback address only
    # Reached by any other name (a load balancer ending TLS forwards plain http), it is Secure.
    with httpx.Client(base_url=str(anonymous.base_url), timeout=30) as elsewhere:
        behind = elsewhere.post(
            "/console/sign-in", data={"token": TOKEN, "name": "ada"}, headers={"Host": "console.shop.example"}
        )
    assert behind.status_code == 303 and "; secure" in behind.headers["set-cookie"].lower()
    page = anonymous.get("/console")
    assert page.status_code == 200 and "bootstrap" in page.text and "admin" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"] and page.headers["x-frame-options"] == "DENY"


def test_a_post_without_the_session_csrf_token_does_nothing(signed_in, shop):
    saga_id = uuid.uuid4()
    for path in (
        f"/console/sagas/{saga_id}/resolve",
        f"/console/sagas/{saga_id}/steps/process_payment/retry-compensation",
        "/console/dead-letters/saga-escalations/redrive",
        "/console/sign-out",
    ):
        assert signed_in.post(path, data={"reason": "no token", "csrf": ""}).status_code == 403, path
    assert signed_in.get("/console").status_code == 200  # still signed in: the sign-out was refused too


def test_bad_filters_unknown_sagas_and_queues_get_clear_refusals(signed_in):
    assert signed_in.get("/console/sagas", params={"status": "bogus"}).status_code == 400
    assert signed_in.get("/console/sagas", params={"order_id": "not-a-uuid"}).status_code == 400
    assert signed_in.get("/console/sagas", params={"older_than": "-5"}).status_code == 400
    bad_cursor = signed_in.get("/console/sagas", params={"cursor": "garbage"})
    assert bad_cursor.status_code == 400 and "not a page cursor" in bad_cursor.text
    # A cursor whose instant exists only in its own offset (year 0 in UTC) is refused, not a 500.
    year_zero = base64.urlsafe_b64encode(f"0001-01-01T00:00:00+01:00|{UNKNOWN_SAGA}".encode()).decode()
    assert signed_in.get("/console/sagas", params={"cursor": year_zero}).status_code == 400
    assert signed_in.get(f"/console/sagas/{UNKNOWN_SAGA}").status_code == 404
    assert signed_in.get("/console/sagas/not-a-saga").status_code == 404
    token = csrf(signed_in)
    assert signed_in.post("/console/dead-letters/no-such-dlq/redrive", data={"csrf": token}).status_code == 404
    assert (
        signed_in.post(f"/console/sagas/{uuid.uuid4()}/resolve", data={"csrf": token, "reason": "nothing to resolve"}).status_code
        == 404
    )


def test_resolving_a_saga_that_needs_no_person_is_refused_with_the_reason(signed_in, shop):
    placed = shop.place(shop.order_body(shop.new_sku(5)))
    shop.settled(placed)
    response = signed_in.post(
        f"/console/sagas/{placed['saga_id']}/resolve", data={"csrf": csrf(signed_in), "reason": "nothing wrong with it"}
    )
    assert response.status_code == 409 and "only needs_intervention or compensating" in response.text
    assert shop.saga(placed["saga_id"])["status"] == "completed"
    assert (
        signed_in.post(f"/console/sagas/{placed['saga_id']}/resolve", data={"csrf": csrf(signed_in), "reason": "x"}).status_code
        == 422
    )


def test_only_the_console_s_own_static_files_are_served(anonymous):
    assert anonymous.get("/console/static/console.js").status_code == 200
    assert anonymous.get("/console/static/..%2Froutes.py").status_code == 404
    assert anonymous.get("/console/static/routes.py").status_code == 404


def test_a_redriven_dead_letter_is_shown_with_its_saga_and_the_redrive_lands_in_its_history(stack, shop, signed_in):
    placed = shop.place(shop.order_body(shop.new_sku(5)))
    shop.settled(placed)
    # A reply that failed to be handled until it was dead-lettered.
    late = Envelope.wrap(
        c.InventoryReserved(order_id=placed["order_id"]), sender="inventory", saga_id=uuid.UUID(placed["saga_id"])
    )
    stack.send("orchestrator-replies-dlq", late.model_dump_json(), group=placed["saga_id"])
    page = signed_in.get(f"/console/sagas/{placed['saga_id']}").text
    assert "orchestrator-replies-dlq" in page and "InventoryReserved" in page

    response = signed_in.post(
        "/console/dead-letters/orchestrator-replies-dlq/redrive",
        data={"csrf": csrf(signed_in), "back": f"/console/sagas/{placed['saga_id']}"},
    )
    # moved=1 when the messages are moved one by one (moto); an SQS move task (LocalStack, AWS)
    # reports no count while it runs.
    location = response.headers["location"]
    assert response.status_code == 303 and ("moved=1" in location or location.endswith("moved="))
    history = shop.saga(placed["saga_id"])["history"]
    [redriven] = [h for h in history if h["event"] == "operator_redrive"]
    assert redriven["step"] == "reserve_inventory"
    assert redriven["detail"] == ("by bootstrap: InventoryReserved from orchestrator-replies-dlq back to orchestrator-replies")
    # Handled this time: a reply that answers none of the saga's commands (it has no causation
    # id), refused and said so.
    eventually(
        lambda: [h for h in shop.saga(placed["saga_id"])["history"] if h["event"] == "reply_refused"],
        what="the redriven reply handled",
    )
