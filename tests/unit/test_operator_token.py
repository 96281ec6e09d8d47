"""The operator token: which settings give it, and which Authorization headers match it."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from messaging import http
from orchestrator.settings import Settings as OrchestratorSettings
from payment_svc.settings import Settings as PaymentSettings

TOKEN, PREVIOUS = "s3cret-operator-token", "older-operator-token"


@pytest.fixture
def env(monkeypatch):
    for name in ("SAGA_OPERATOR_TOKEN", "SAGA_OPERATOR_TOKEN_PREVIOUS", "ORCHESTRATOR_OPERATOR_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", "postgresql://db/orchestrator")
    monkeypatch.setenv("PAYMENT_DATABASE_URL", "postgresql://db/payment")
    return monkeypatch


def test_every_service_reads_the_shared_token_and_the_previous_one(env):
    env.setenv("SAGA_OPERATOR_TOKEN", TOKEN)
    env.setenv("SAGA_OPERATOR_TOKEN_PREVIOUS", PREVIOUS)
    assert PaymentSettings().operator_tokens() == [TOKEN, PREVIOUS]
    assert OrchestratorSettings().operator_tokens() == [TOKEN, PREVIOUS]


def test_orchestrator_alias_is_accepted_alone_or_when_equal(env):
    env.setenv("ORCHESTRATOR_OPERATOR_TOKEN", TOKEN)
    assert OrchestratorSettings().operator_tokens() == [TOKEN]
    env.setenv("SAGA_OPERATOR_TOKEN", TOKEN)
    assert OrchestratorSettings().operator_tokens() == [TOKEN]


def test_differing_tokens_stop_the_start_and_say_why_without_showing_them(env):
    env.setenv("SAGA_OPERATOR_TOKEN", TOKEN)
    env.setenv("ORCHESTRATOR_OPERATOR_TOKEN", PREVIOUS)
    with pytest.raises(ValidationError) as refused:
        OrchestratorSettings()
    assert "both set and differ" in str(refused.value)
    assert TOKEN not in str(refused.value) and PREVIOUS not in str(refused.value)


@pytest.mark.parametrize("bad", ["short", "with space in the token", "tökén-that-is-long-enough"])
def test_a_token_that_cannot_be_sent_or_is_guessable_stops_the_start(env, bad):
    env.setenv("SAGA_OPERATOR_TOKEN", bad)
    with pytest.raises(ValidationError):
        PaymentSettings()


def test_unset_or_empty_means_no_token(env):
    env.setenv("SAGA_OPERATOR_TOKEN", "")
    assert PaymentSettings().operator_tokens() == []


@pytest.mark.parametrize(
    "header, expected",
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"BEARER {PREVIOUS}", True),
        (None, False),
        ("", False),
        ("Bearer", False),
        (f"Bearer  {TOKEN}", False),
        (f"Basic {TOKEN}", False),
        (TOKEN, False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        ("Bearer \xe9\xff", False),
        ("Bearer " + "x" * 100_000, False),
    ],
)
def test_only_the_exact_bearer_token_is_authorized(header, expected):
    assert http.authorized(header, [TOKEN, PREVIOUS]) is expected


async def test_with_no_token_configured_a_protected_route_refuses_everyone():
    app = FastAPI()
    http.install(app)
    router = http.operator_router()

    @router.get("/secret")
    async def secret() -> dict:
        return {"ok": True}

    app.include_router(router)
    app.state.runtime = SimpleNamespace(settings=SimpleNamespace(operator_tokens=lambda: []))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN}"}):
            response = await client.get("/secret", headers=headers)
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"
