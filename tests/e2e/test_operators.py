"""Operators with names and roles, against the running stack: personal tokens issued and
revoked with sagactl, a viewer refused every write, the actor always the token's name, an
audit log of actions and refusals, and console sessions that end."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.e2e.conftest import OPERATOR, OPERATOR_TOKEN, sagactl

pytestmark = pytest.mark.e2e

SAGA = uuid.uuid5(uuid.NAMESPACE_URL, "test-operators/saga")
SHIPMENT = uuid.uuid5(uuid.NAMESPACE_URL, "test-operators/shipment")
# Every write route of every service, with a body it would accept.
WRITES = [
    ("orchestrator", "POST", f"/operator/sagas/{SAGA}/resolve", {"reason": "done by hand"}),
    ("orchestrator", "POST", f"/operator/sagas/{SAGA}/steps/process_payment/retry-compensation", {}),
    ("orchestrator", "POST", f"/operator/sagas/{SAGA}/pause", {"reason": "look"}),
    ("orchestrator", "POST", f"/operator/sagas/{SAGA}/resume", {}),
    ("orchestrator", "POST", "/operator/sagas/bulk/retry", {"status": "needs_intervention", "dry_run": False}),
    ("orchestrator", "POST", "/operator/definitions/order/pause", {"reason": "look"}),
    ("orchestrator", "POST", "/operator/definitions/order/resume", {}),
    ("orchestrator", "POST", "/operator/dead-letters/payment-commands-dlq/redrive", None),
    ("orchestrator", "POST", "/operator/operators", {"name": "mallory", "role": "admin"}),
    ("inventory_svc", "PUT", "/stock/SKU-VIEWER", {"available": 5}),
    ("fulfillment_svc", "POST", f"/shipments/{SHIPMENT}/dispatch", None),
    ("fulfillment_svc", "POST", f"/shipments/{SHIPMENT}/return", None),
]


def _issue(stack, name: str, role: str) -> str:
    """A personal token, issued with sagactl by the bootstrap admin, as the runbook says."""
    printed = sagactl(stack, "operators", "add", name, "--role", role)
    token = printed.strip().splitlines()[-1]
    assert re.fullmatch(r"sgo_[A-Za-z0-9_-]{43}", token), printed
    return token


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _audit(shop, module: str = "orchestrator", **params) -> list[dict]:
    response = shop.operator.get(shop.url(module, "/operator/audit"), params=params | {"limit": 500})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_viewer_reads_but_gets_403_on_every_write_and_each_refusal_is_audited(stack, shop):
    viewer = _name("vera")
    token = _issue(stack, viewer, "viewer")
    client = httpx.Client(timeout=10, headers=_bearer(token))
    assert client.get(shop.url("orchestrator", "/operator/sagas")).status_code == 200
    # Participants ask the orchestrator whose the token is.
    assert client.get(shop.url("inventory_svc", "/stock/SKU-NONE")).status_code == 404
    for module, method, path, body in WRITES:
        response = client.request(method, shop.url(module, path), json=body)
        assert response.status_code == 403, (module, path, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert client.get(shop.url("inventory_svc", "/stock/SKU-VIEWER")).status_code == 404, "nothing was written"
    for module in ("orchestrator", "inventory_svc", "fulfillment_svc"):
        denied = {(e["target"], e["outcome"], e["status"]) for e in _audit(shop, module, actor=viewer)}
        expected = {(path, "denied", 403) for m, _, path, _ in WRITES if m == module}
        assert expected <= denied, (module, expected - denied)


def test_the_actor_recorded_is_the_token_s_name_whatever_the_body_says(stack, shop):
    operator = _name("grace")
    client = httpx.Client(timeout=10, headers=_bearer(_issue(stack, operator, "operator")))
    sku = shop.new_sku(10)
    _, saga = shop.settled(shop.place(shop.refund_failure_body(sku)))
    assert saga["status"] == "needs_intervention"
    resolved = client.post(
        shop.url("orchestrator", f"/operator/sagas/{saga['saga_id']}/resolve"),
        json={"actor": "mallory", "reason": "refunded by bank transfer"},
    )
    assert resolved.status_code == 200, resolved.text
    history = shop.saga(saga["saga_id"])["history"]
    acted = [h["detail"] for h in history if h["event"] == "operator_resolved"]
    assert len(acted) == 1 and operator in acted[0] and "mallory" not in acted[0], acted
    assert client.put(shop.url("inventory_svc", f"/stock/{sku}"), json={"available": 20}).status_code == 200
    entries = _audit(shop, "inventory_svc", actor=operator)
    assert [(e["action"], e["target"], e["outcome"], e["role"]) for e in entries] == [
        ("set_stock", f"/stock/{sku}", "ok", "operator")
    ], entries
    assert entries[0]["source"] == "127.0.0.1"


def test_no_token_or_a_wrong_one_is_audited_as_anonymous(shop):
    wrong = "sgo_" + "A" * 43
    assert shop.http.post(shop.url("orchestrator", f"/operator/sagas/{SAGA}/resolve"), headers=_bearer(wrong)).status_code == 401
    entries = _audit(shop, actor="anonymous", outcome="denied")
    assert any(e["target"] == f"/operator/sagas/{SAGA}/resolve" and e["status"] == 401 for e in entries)
    assert all(wrong not in str(e) for e in entries), "a token is never recorded"


def test_only_an_admin_manages_operators_and_a_revoked_token_stops_working(stack, shop):
    admin, operator = _name("ada"), _name("op")
    admin_client = httpx.Client(timeout=10, headers=_bearer(_issue(stack, admin, "admin")))
    op_token = _issue(stack, operator, "operator")
    as_operator = httpx.Client(timeout=10, headers=_bearer(op_token))
    assert as_operator.get(shop.url("orchestrator", "/operator/operators")).status_code == 403
    assert as_operator.get(shop.url("orchestrator", "/operator/whoami")).json() == {"name": operator, "role": "operator"}
    # Rotation without a redeploy: the new token works at once, the old one ends after its grace (none here).
    rotated = admin_client.post(shop.url("orchestrator", f"/operator/operators/{operator}/rotate"), json={"grace_seconds": 0})
    assert rotated.status_code == 200, rotated.text
    new_token = rotated.json()["token"]
    assert as_operator.get(shop.url("orchestrator", "/operator/whoami")).status_code == 401
    assert httpx.get(shop.url("orchestrator", "/operator/whoami"), headers=_bearer(new_token)).status_code == 200
    assert admin_client.delete(shop.url("orchestrator", f"/operator/operators/{operator}")).status_code == 204
    assert httpx.get(shop.url("orchestrator", "/operator/whoami"), headers=_bearer(new_token)).status_code == 401
    listed = {row["name"] for row in admin_client.get(shop.url("orchestrator", "/operator/operators")).json()}
    assert admin in listed and operator not in listed
    audited = {(e["action"], e["actor"]) for e in _audit(shop, actor=admin)}
    assert {("rotate_operator", admin), ("revoke_operator", admin)} <= audited


def _console(shop) -> httpx.Client:
    return httpx.Client(base_url=shop.url("orchestrator", ""), timeout=10, follow_redirects=False)


def _sign_in(browser: httpx.Client, token: str) -> str:
    response = browser.post("/console/sign-in", data={"token": token, "next": "/console"})
    assert response.status_code == 303, response.text
    cookie = browser.cookies.get("saga_console")
    assert cookie and token not in cookie, "the cookie carries a session id, never the token"
    return cookie


def test_a_signed_out_console_session_is_refused_even_with_its_old_cookie(stack, shop):
    browser = _console(shop)
    cookie = _sign_in(browser, _issue(stack, _name("sid"), "operator"))
    page = browser.get("/console")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert browser.post("/console/sign-out", data={"csrf": csrf}).status_code == 303
    replayed = httpx.get(shop.url("orchestrator", "/console"), cookies={"saga_console": cookie})
    assert replayed.status_code == 401 and 'id="token"' in replayed.text


def test_an_expired_console_session_is_refused(stack, shop):
    name = _name("exp")
    browser = _console(shop)
    cookie = _sign_in(browser, _issue(stack, name, "operator"))
    assert browser.get("/console").status_code == 200

    async def expire() -> None:  # the session's clock run forward: it ended a second ago
        engine = create_async_engine(stack.service_database_url("orchestrator"))
        async with engine.begin() as db:
            await db.execute(
                text("UPDATE console_sessions SET expires_at = now() - interval '1 second' WHERE operator = :n"), {"n": name}
            )
        await engine.dispose()

    asyncio.run(expire())
    replayed = httpx.get(shop.url("orchestrator", "/console"), cookies={"saga_console": cookie})
    assert replayed.status_code == 401 and 'id="token"' in replayed.text


def test_a_viewer_s_console_shows_no_action_and_refuses_a_posted_one(stack, shop):
    viewer = _name("vic")
    browser = _console(shop)
    _sign_in(browser, _issue(stack, viewer, "viewer"))
    placed = shop.place(shop.refund_failure_body(shop.new_sku(5)))
    assert shop.settled(placed)[1]["status"] == "needs_intervention"
    as_operator = _console(shop)
    _sign_in(as_operator, _issue(stack, _name("oli"), "operator"))
    assert 'id="actions"' in as_operator.get(f"/console/sagas/{placed['saga_id']}").text, "an operator is offered resolve"
    page = browser.get(f"/console/sagas/{placed['saga_id']}")
    assert page.status_code == 200 and viewer in page.text
    assert 'id="actions"' not in page.text and 'id="resolve"' not in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    refused = browser.post(f"/console/sagas/{placed['saga_id']}/pause", data={"csrf": csrf, "reason": "x"})
    assert refused.status_code == 403
    assert browser.get("/console/bulk").status_code == 403
    audit_page = browser.get("/console/audit", params={"actor": viewer})
    assert audit_page.status_code == 200 and "console.pause" in audit_page.text and "denied" in audit_page.text


def test_sagactl_audit_reads_a_participant_s_log(stack, shop):
    sku = shop.new_sku(3)  # PUT /stock with the bootstrap token
    env = os.environ | {"SAGA_OPERATOR_TOKEN": OPERATOR_TOKEN, "COLUMNS": "250"}
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "audit", "--url", stack.url("inventory_svc"), "--action", "set_stock"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"/stock/{sku}" in result.stdout and "bootstrap" in result.stdout
    assert OPERATOR["Authorization"].split()[1] not in result.stdout
