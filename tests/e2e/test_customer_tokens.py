"""The public API with an identity provider: keys the test makes, a JWKS it serves over HTTP,
and order_svc restarted to trust it (ORDER_JWT_ISSUER, _AUDIENCE, _JWKS_URL)."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from stack.infra import free_port

pytestmark = pytest.mark.e2e

ISSUER, AUDIENCE = "https://id.shop.example/", "orders-api"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _token(key: rsa.RSAPrivateKey, subject: str, *, kid: str = "k1", expires_in: float = 300, **claims) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + int(expires_in)} | claims
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def provider():
    """An identity provider's key, and its JWKS served on 127.0.0.1."""
    key = _key()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k1", "use": "sig", "alg": "RS256"}
    body = json.dumps({"keys": [jwk]}).encode()

    class JWKS(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802  (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), JWKS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield key, f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def with_provider(stack, provider):
    _, jwks_url = provider
    with stack.restarted_with("order_svc", ORDER_JWT_ISSUER=ISSUER, ORDER_JWT_AUDIENCE=AUDIENCE, ORDER_JWT_JWKS_URL=jwks_url):
        yield


def _place(shop, body: dict, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return shop.http.post(shop.url("order_svc", "/orders"), json=body, headers=headers)


def test_the_order_s_customer_is_the_token_s_subject_and_only_they_may_cancel(shop, provider, with_provider):
    key, _ = provider
    ada, eve = f"ada-{uuid.uuid4().hex[:8]}", f"eve-{uuid.uuid4().hex[:8]}"
    # The body names someone else: the token's subject is the customer.
    placed = _place(shop, shop.order_body(shop.new_sku(5), customer_id=eve), _token(key, ada))
    assert placed.status_code == 202, placed.text
    order = placed.json()
    listed = shop.operator.get(shop.url("order_svc", "/orders"), params={"customer_id": ada}).json()
    assert [o["order_id"] for o in listed] == [order["order_id"]]
    assert shop.operator.get(shop.url("order_svc", "/orders"), params={"customer_id": eve}).json() == []
    shop.settled(order)

    cancel = shop.url("order_svc", f"/orders/{order['order_id']}/cancel")
    theirs = shop.http.post(cancel, headers={"Authorization": f"Bearer {_token(key, eve)}"})
    assert theirs.status_code == 403 and theirs.headers["content-type"] == "application/problem+json"
    assert shop.order(order["order_id"])["status"] == "confirmed"  # nothing started
    assert shop.http.post(cancel).status_code == 401
    mine = shop.http.post(cancel, headers={"Authorization": f"Bearer {_token(key, ada)}"})
    assert mine.status_code == 202, mine.text


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda key: None, id="missing"),
        pytest.param(lambda key: "not-a-jwt", id="garbage"),
        pytest.param(lambda key: _token(key, "ada", expires_in=-120), id="expired"),
        pytest.param(lambda key: _token(_key(), "ada"), id="signed-by-another-key"),
        pytest.param(lambda key: _token(key, "ada", aud="another-api"), id="another-audience"),
        pytest.param(lambda key: _token(key, "ada", iss="https://evil.example/"), id="another-issuer"),
        pytest.param(lambda key: jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "ada", "exp": 2**31}, "k" * 32), id="hmac"),
    ],
)
def test_a_bad_or_expired_token_gets_401_and_writes_nothing(shop, provider, with_provider, token):
    key, _ = provider
    customer = f"c-{uuid.uuid4().hex[:12]}"
    refused = _place(shop, shop.order_body("SKU-1", customer_id=customer), token(key))
    assert refused.status_code == 401, refused.text
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.headers["content-type"] == "application/problem+json"
    assert shop.operator.get(shop.url("order_svc", "/orders"), params={"customer_id": customer}).json() == []
