"""The shared HTTP edge's answers to what a request cannot carry: instants out of range, and
an unexpected error, which is a 500 whose log line has the stack and none of the request's data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
import structlog
from fastapi import FastAPI

from messaging import http

EMAIL = "ada.lovelace@example.com"


def test_an_instant_is_read_as_utc_and_one_out_of_range_is_refused():
    assert http.utc(datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))) == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert http.utc(datetime(2026, 1, 1, 12)) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    for out_of_range in (
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=1))),
    ):
        with pytest.raises(ValueError, match="out of range"):
            http.utc(out_of_range)


def _app() -> FastAPI:
    app = FastAPI()
    http.install(app)

    @app.get("/when")
    async def when(at: http.Instant) -> dict:
        return {"at": at.isoformat()}

    @app.post("/orders/{order_id}")
    async def fails(order_id: str) -> None:
        def deeper(email: str) -> None:
            raise KeyError(f"no customer {email}")

        try:
            deeper(EMAIL)
        except KeyError as error:
            raise RuntimeError(f"lookup failed for {EMAIL}") from error

    return app


async def _get(app: FastAPI, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.request(method, path)


async def test_an_instant_out_of_range_is_a_422_not_a_500():
    app = _app()
    assert (await _get(app, "GET", "/when?at=2026-01-01T12:00:00%2B02:00")).json() == {"at": "2026-01-01T10:00:00+00:00"}
    refused = await _get(app, "GET", "/when?at=0001-01-01T00:00:00%2B01:00")
    assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["query", "at"]


async def test_a_500_logs_where_it_was_raised_and_none_of_the_request_s_data():
    with structlog.testing.capture_logs() as logs:
        response = await _get(_app(), "POST", f"/orders/{EMAIL}")
    assert response.status_code == 500 and EMAIL not in response.text
    [line] = [entry for entry in logs if entry["event"] == "request_failed"]
    assert line["route"] == "/orders/{order_id}" and line["error_type"] == "RuntimeError"
    stack = line["stack"]
    # The chain, outermost last: the KeyError where deeper raised it, then the RuntimeError.
    assert any(frame.endswith("in deeper") for frame in stack) and any(frame.endswith("in fails") for frame in stack)
    assert stack.index("raised builtins.KeyError") < stack.index("raised builtins.RuntimeError")
    assert EMAIL not in repr(line)
