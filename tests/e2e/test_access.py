"""Access and input at the edge: the operator token, problem details, text the system
cannot carry, and Idempotency-Key as the IETF draft describes it."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from messaging import janitor
from order_svc.api import IDEMPOTENCY_TTL
from order_svc.tables import idempotency_keys
from stack import infra
from tests.conftest import eventually
from tests.e2e.conftest import OPERATOR, PREVIOUS_OPERATOR_TOKEN

pytestmark = pytest.mark.e2e

# Ids of nothing, the same in every process (pytest -n collects the parameters in each worker).
ORDER, SAGA, SHIPMENT = (uuid.uuid5(uuid.NAMESPACE_URL, f"test-access/{name}") for name in ("order", "saga", "shipment"))
PROTECTED = [
    ("inventory_svc", "GET", "/stock/SKU-1"),
    ("inventory_svc", "PUT", "/stock/SKU-1"),
    ("fulfillment_svc", "POST", f"/shipments/{SHIPMENT}/dispatch"),
    ("fulfillment_svc", "POST", f"/shipments/{SHIPMENT}/return"),
    ("fulfillment_svc", "GET", f"/shipments?order_id={ORDER}"),
    ("payment_svc", "GET", f"/payments?order_id={ORDER}"),
    ("notification_svc", "GET", f"/notifications?order_id={ORDER}"),
    ("orchestrator", "GET", "/sagas"),
    ("orchestrator", "GET", "/operator/sagas"),
    ("order_svc", "GET", "/orders?customer_id=c-1"),
]
BAD_AUTHORIZATION = [
    "",
    "Bearer",
    "Bearer  test-operator-token",
    "Basic dGVzdDp0ZXN0",
    "test-operator-token",
    "Bearer test-operator-token-wrong",
    "Bearer test-operator-tokén",
    "Bearer ∂∂∂",
    "Bearer test-operator-token extra",
    "Bearer " + "x" * 8000,
]


def _send(shop, module, method, path, **kwargs):
    return shop.http.request(method, shop.url(module, path), **kwargs)


@pytest.mark.parametrize("module, method, path", PROTECTED)
def test_protected_endpoints_need_the_operator_token(shop, module, method, path):
    body = {"available": 5} if method == "PUT" else None
    refused = _send(shop, module, method, path, json=body)
    assert refused.status_code == 401, refused.text
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 401 and refused.json()["title"] == "Unauthorized"
    accepted = _send(shop, module, method, path, json=body, headers=OPERATOR)
    assert accepted.status_code in (200, 404), accepted.text


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION, ids=range(len(BAD_AUTHORIZATION)))
def test_every_authorization_but_the_right_bearer_token_gets_401(shop, authorization):
    headers = {"Authorization": authorization.encode()}  # raw bytes: non-ASCII reaches the server as sent
    for module, method, path in PROTECTED:
        response = _send(shop, module, method, path, headers=headers, json={"available": 5} if method == "PUT" else None)
        assert response.status_code == 401, (module, path, response.status_code, response.text)


def test_previous_token_is_accepted_during_a_rotation(shop):
    headers = {"Authorization": f"bearer {PREVIOUS_OPERATOR_TOKEN}"}  # the scheme is case-insensitive
    assert _send(shop, "orchestrator", "GET", "/sagas", headers=headers).status_code == 200
    assert _send(shop, "inventory_svc", "GET", "/stock/SKU-NONE", headers=headers).status_code == 404


def test_authentication_is_checked_before_any_input(shop):
    assert _send(shop, "inventory_svc", "PUT", "/stock/%00", content=b"{not json").status_code == 401
    assert _send(shop, "orchestrator", "GET", "/sagas?limit=-1&status=nonsense").status_code == 401
    assert _send(shop, "fulfillment_svc", "POST", "/shipments/not-a-uuid/dispatch").status_code == 401
    assert _send(shop, "order_svc", "GET", "/orders").status_code == 401


def test_open_endpoints_need_no_token(shop):
    placed = shop.place(shop.order_body(shop.new_sku(5), quantity=1))
    assert _send(shop, "order_svc", "GET", f"/orders/{placed['order_id']}").status_code == 200
    eventually(
        lambda: _send(shop, "orchestrator", "GET", f"/sagas/{placed['saga_id']}").status_code == 200,
        what="saga readable without a token",
    )
    for module in ("order_svc", "orchestrator", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc"):
        assert _send(shop, module, "GET", "/health").status_code == 200
        assert _send(shop, module, "GET", "/metrics").status_code == 200


@pytest.mark.parametrize("character", ["\u0000", "\u0007", "\u007f", "\u0085", "\ufdd0", "\uffff", "\U0001fffe"])
def test_text_the_system_cannot_carry_is_refused_and_writes_nothing(shop, character):
    customer = f"c-{uuid.uuid4().hex[:12]}"
    body = shop.order_body("SKU-1", customer_id=customer)
    body["shipping_address"]["name"] = f"Ada{character}"
    response = shop.http.post(shop.url("order_svc", "/orders"), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "shipping_address", "name"]
    assert shop.operator.get(shop.url("order_svc", "/orders"), params={"customer_id": customer}).json() == []


def test_a_lone_surrogate_is_refused_wherever_it_is(shop):
    customer = f"c-{uuid.uuid4().hex[:12]}"
    body = json.dumps(shop.order_body("SKU-1", customer_id=customer))
    for text in (body.replace('"Ada"', '"Ada\\ud800"'), body.replace('"Ada"', '"Ada", "\\udfff": 1')):
        response = shop.http.post(shop.url("order_svc", "/orders"), content=text, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["errors"]
    assert shop.operator.get(shop.url("order_svc", "/orders"), params={"customer_id": customer}).json() == []


@pytest.mark.parametrize(
    "module, path",
    [
        ("inventory_svc", "/stock/%00"),
        ("inventory_svc", "/stock/%ED%A0%80"),
        ("inventory_svc", "/stock/" + "A" * 300),
        ("order_svc", "/orders?customer_id=%00"),
        ("order_svc", "/orders?customer_id=c-1&limit=99999999999999999999"),
        ("orchestrator", "/sagas?older_than_seconds=99999999999999999999"),
        # Instants that exist only in their own offset: year 0, or 10000, in UTC.
        ("orchestrator", "/sagas?started_after=0001-01-01T00:00:00%2B01:00"),
        ("orchestrator", "/operator/sagas?started_before=9999-12-31T23:59:59-01:00"),
        ("payment_svc", "/payments?order_id=%00"),
        ("orchestrator", "/operator/sagas/00000000-0000-0000-0000-000000000000/steps/%00/retry-compensation"),
    ],
)
def test_bad_path_and_query_parameters_are_422_not_500(shop, module, path):
    method = "POST" if path.endswith("retry-compensation") else "GET"
    response = _send(shop, module, method, path, headers=OPERATOR, json={} if method == "POST" else None)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and isinstance(problem["detail"], str)
    assert all(set(error) == {"loc", "msg", "type"} for error in problem["errors"])


@pytest.mark.parametrize(
    "module, method, path, limit",
    [
        ("order_svc", "POST", "/orders", 64 * 1024),
        ("inventory_svc", "PUT", "/stock/SKU-1", 64 * 1024),
        ("payment_svc", "GET", f"/payments?order_id={ORDER}", 64 * 1024),
        ("fulfillment_svc", "POST", f"/shipments/{SHIPMENT}/dispatch", 64 * 1024),
        ("notification_svc", "GET", f"/notifications?order_id={ORDER}", 64 * 1024),
        ("orchestrator", "POST", "/operator/sagas/bulk/retry", 1024 * 1024),
    ],
)
def test_every_service_refuses_a_body_over_its_limit_unread(shop, module, method, path, limit):
    """Each service's body limit (<SVC>_MAX_BODY_BYTES), declared or streamed: a 413 before the
    route or its token check reads anything."""
    body = json.dumps({"padding": "x" * limit}).encode()
    declared = _send(shop, module, method, path, headers=OPERATOR | {"Content-Type": "application/json"}, content=body)
    assert declared.status_code == 413, declared.text
    assert declared.headers["content-type"] == "application/problem+json"

    def chunks():
        for start in range(0, len(body), 16384):
            yield body[start : start + 16384]

    streamed = _send(shop, module, method, path, headers=OPERATOR | {"Content-Type": "application/json"}, content=chunks())
    assert streamed.status_code == 413, streamed.text


def test_unknown_path_is_a_problem_too(shop):
    response = shop.http.get(shop.url("payment_svc", "/nowhere"))
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"


def test_accepted_order_has_a_location(shop):
    key = str(uuid.uuid4())
    body = shop.order_body(shop.new_sku(5), quantity=1)
    first = shop.http.post(shop.url("order_svc", "/orders"), json=body, headers={"Idempotency-Key": key})
    again = shop.http.post(shop.url("order_svc", "/orders"), json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.headers["location"] == again.headers["location"] == f"/orders/{first.json()['order_id']}"
    assert shop.http.get(shop.url("order_svc", first.headers["location"])).json()["order_id"] == first.json()["order_id"]


def test_idempotency_keys_are_scoped_to_the_customer(shop):
    key = str(uuid.uuid4())
    sku = shop.new_sku(5)
    ada = shop.place(shop.order_body(sku, quantity=1, customer_id="c-ada"), **{"Idempotency-Key": key})
    bob = shop.place(shop.order_body(sku, quantity=1, customer_id="c-bob"), **{"Idempotency-Key": key})
    assert ada["order_id"] != bob["order_id"]


def test_idempotency_keys_expire_after_24_hours_and_the_janitor_purges_them(shop):
    key = str(uuid.uuid4())
    sku = shop.new_sku(5)
    first = shop.place(shop.order_body(sku, quantity=1), **{"Idempotency-Key": key})
    stack = shop.stack
    url = infra.database_urls(stack.database_url, stack.prefix, ["order"])["order"]

    async def backdate_then_purge() -> dict:
        engine = create_async_engine(url)
        sessions = async_sessionmaker(engine)
        try:
            async with sessions() as session, session.begin():
                await session.execute(
                    idempotency_keys.update()
                    .where(idempotency_keys.c.key == key)
                    .values(created_at=idempotency_keys.c.created_at - IDEMPOTENCY_TTL - timedelta(minutes=1))
                )
            reused = shop.place(shop.order_body(sku, quantity=2), **{"Idempotency-Key": key})
            async with sessions() as session, session.begin():
                await session.execute(
                    idempotency_keys.update()
                    .where(idempotency_keys.c.key == key)
                    .values(created_at=idempotency_keys.c.created_at - IDEMPOTENCY_TTL - timedelta(minutes=1))
                )
            counts = await janitor.purge(
                sessions,
                outbox_retention=timedelta(days=7),
                expiring=[janitor.Expiry(idempotency_keys, "created_at", IDEMPOTENCY_TTL)],
            )
            async with sessions() as session:
                left = (await session.execute(idempotency_keys.select().where(idempotency_keys.c.key == key))).all()
            return {"reused": reused, "counts": counts, "left": left}
        finally:
            await engine.dispose()

    outcome = asyncio.run(backdate_then_purge())
    assert outcome["reused"]["order_id"] != first["order_id"]  # expired: a new request, not a 422
    assert outcome["counts"]["idempotency_keys"] >= 1 and outcome["left"] == []
