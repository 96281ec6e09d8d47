"""The orders API's handling of bad input and repeated requests."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import uuid

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda b: b.pop("customer_id"), "customer_id"),
        (lambda b: b.update(extra="x"), "extra"),
        (lambda b: b.update(items=[]), "items"),
        (lambda b: b.update(items=[dict(b["items"][0], sku=f"SKU-{i}") for i in range(51)]), "items"),
        (lambda b: b["items"][0].update(quantity=0), "quantity"),
        (lambda b: b["items"][0].update(quantity=-3), "quantity"),
        (lambda b: b["items"][0].update(unit_price="-1.00"), "unit_price"),
        (lambda b: b["items"][0].update(unit_price="1.005"), "unit_price"),
        (lambda b: b.update(currency="XYZ"), "currency"),
        (lambda b: b.update(customer_email="not-an-email"), "customer_email"),
        (lambda b: b.update(payment_token="4242424242424242"), "payment_token"),
        (lambda b: b["shipping_address"].pop("city"), "city"),
        (lambda b: b.update(items=[{"sku": "SKU-1", "quantity": 1000, "unit_price": "9999999999.99"}]), "items"),
    ],
)
def test_malformed_order_is_rejected_with_field_errors_and_writes_nothing(shop, mutate, field):
    customer = f"c-{uuid.uuid4().hex[:12]}"
    body = shop.order_body("SKU-1", customer_id=customer)
    mutate(body)
    response = shop.http.post(shop.url("order_svc", "/orders"), json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert any(field in [str(part) for part in error["loc"]] for error in response.json()["errors"]), response.text
    # A valid order of the same customer shows the listing works; the rejected one is absent.
    shop.place(shop.order_body(shop.new_sku(1), quantity=1, customer_id=customer))
    assert len(shop.operator.get(shop.url("order_svc", "/orders"), params={"customer_id": customer}).json()) == 1


def test_body_over_64_kib_is_refused_whether_declared_or_streamed(shop):
    customer = f"c-{uuid.uuid4().hex[:12]}"
    body = shop.order_body("SKU-1", customer_id=customer)
    body["shipping_address"]["line1"] = "x" * (70 * 1024)
    response = shop.http.post(shop.url("order_svc", "/orders"), json=body)
    assert response.status_code == 413
    encoded = json.dumps(body).encode()

    def chunks():  # no Content-Length: the server must count as it reads
        for start in range(0, len(encoded), 8192):
            yield encoded[start : start + 8192]

    streamed = shop.http.post(shop.url("order_svc", "/orders"), content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    small = json.dumps(shop.order_body(shop.new_sku(1), quantity=1, customer_id=customer)).encode()
    accepted = shop.http.post(
        shop.url("order_svc", "/orders"), content=iter([small[:100], small[100:]]), headers={"Content-Type": "application/json"}
    )
    assert accepted.status_code == 202
    listed = shop.operator.get(shop.url("order_svc", "/orders"), params={"customer_id": customer}).json()
    assert [o["order_id"] for o in listed] == [accepted.json()["order_id"]]


def test_same_idempotency_key_and_body_gives_one_order_even_concurrently(shop):
    sku = shop.new_sku(100)
    key = str(uuid.uuid4())
    body = shop.order_body(sku, quantity=1)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(
                lambda _: shop.http.post(shop.url("order_svc", "/orders"), json=body, headers={"Idempotency-Key": key}), range(8)
            )
        )
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["order_id"] for r in responses}) == 1
    placed = responses[0].json()
    shop.settled(placed)
    assert shop.stock(sku)["available"] == 99


def test_same_idempotency_key_with_another_body_is_unprocessable(shop):
    key = str(uuid.uuid4())
    sku = shop.new_sku(10)
    shop.place(shop.order_body(sku, quantity=1), **{"Idempotency-Key": key})
    response = shop.http.post(
        shop.url("order_svc", "/orders"), json=shop.order_body(sku, quantity=2), headers={"Idempotency-Key": key}
    )
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]


def test_unknown_order_is_404(shop):
    assert shop.http.get(shop.url("order_svc", f"/orders/{uuid.uuid4()}")).status_code == 404
    assert shop.http.get(shop.url("order_svc", "/orders/not-a-uuid")).status_code == 422


def test_orders_past_the_in_flight_bound_are_refused_up_front_and_nothing_is_written(stack, shop):
    """A backlog that would outlast the saga's budget is refused with 503 and Retry-After,
    rather than accepted and cancelled later; once it drains, orders are accepted again."""
    sku = shop.new_sku(100)
    customer = f"c-{uuid.uuid4().hex[:12]}"
    with _nothing_finishing(stack, ORDER_MAX_IN_FLIGHT="4"):
        responses = [
            shop.http.post(shop.url("order_svc", "/orders"), json=shop.order_body(sku, 1, customer_id=customer)) for _ in range(8)
        ]
        accepted = [r.json() for r in responses if r.status_code == 202]
        refused = [r for r in responses if r.status_code == 503]
        assert len(accepted) + len(refused) == 8 and len(accepted) <= 4 and len(refused) >= 4
        for response in refused:
            assert response.headers["content-type"] == "application/problem+json"
            assert 1 <= int(response.headers["Retry-After"]) <= 30
            assert "in flight" in response.json()["detail"]
        # The refused orders were never written: the customer has exactly the accepted ones.
        listed = shop.operator.get(shop.url("order_svc", "/orders"), params={"customer_id": customer}).json()
        assert sorted(o["order_id"] for o in listed) == sorted(a["order_id"] for a in accepted)
    for placed in accepted:
        assert shop.settled(placed, timeout=60)[1]["status"] == "completed"
    shop.place(shop.order_body(sku, 1, customer_id=customer))  # the backlog drained: accepted again


def test_one_customer_at_its_cap_is_refused_while_another_is_still_accepted(stack, shop):
    sku = shop.new_sku(100)
    greedy, other = (f"c-{uuid.uuid4().hex[:12]}" for _ in range(2))
    with _nothing_finishing(stack, ORDER_MAX_IN_FLIGHT_PER_CUSTOMER="3"):
        responses = [
            shop.http.post(shop.url("order_svc", "/orders"), json=shop.order_body(sku, 1, customer_id=greedy)) for _ in range(5)
        ]
        assert [r.status_code for r in responses] == [202, 202, 202, 429, 429]
        for response in responses[3:]:
            assert response.headers["content-type"] == "application/problem+json"
            assert 1 <= int(response.headers["Retry-After"]) <= 30
            assert "orders in flight" in response.json()["detail"]
        # Another customer is not held back by the first one's orders.
        theirs = shop.http.post(shop.url("order_svc", "/orders"), json=shop.order_body(sku, 1, customer_id=other))
        assert theirs.status_code == 202, theirs.text
        # The refused orders were never written.
        listed = shop.operator.get(shop.url("order_svc", "/orders"), params={"customer_id": greedy}).json()
        assert sorted(o["order_id"] for o in listed) == sorted(r.json()["order_id"] for r in responses[:3])
    for placed in [r.json() for r in responses[:3]] + [theirs.json()]:
        assert shop.settled(placed, timeout=60)[1]["status"] == "completed"
    shop.place(shop.order_body(sku, 1, customer_id=greedy))  # its orders finished: accepted again


@contextlib.contextmanager
def _nothing_finishing(stack, **order_svc_env: str):
    """order_svc restarted with ``order_svc_env``, the orchestrator stopped so that every
    accepted order stays in flight; both as before afterwards."""
    stack.stop_service("orchestrator")
    try:
        with stack.restarted_with("order_svc", **order_svc_env):
            yield
    finally:
        stack.start_service("orchestrator")
