"""Every documented route of every service is reached by its own paths. A path is handled by
the first route that fits it, so a route declared after a more general one
(``/sagas/bulk/resolve`` after ``/sagas/{saga_id}/resolve``) never runs, and its callers get
the other route's answer. Each operation of each service's OpenAPI document is requested
through the real application, and the endpoint that took it must be that operation's."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import re
import uuid

import pytest
from fastapi import FastAPI

SERVICES = ("order_svc", "orchestrator", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc")


def _app(service: str) -> FastAPI:
    module = importlib.import_module(f"{service}.main")
    settings = importlib.import_module(f"{service}.settings").Settings.model_validate(
        {"database_url": "postgresql+asyncpg://127.0.0.1/none"}
    )
    return module.build_app(settings)


def _examples(path: str, parameters: list[dict]) -> list[str]:
    """Concrete paths for a documented template: a UUID for a UUID parameter, every value of
    an enumerated one, a word for the rest."""
    choices = []
    for name in re.findall(r"\{([^}]+)\}", path):
        schema = next(p["schema"] for p in parameters if p["in"] == "path" and p["name"] == name)
        if schema.get("format") == "uuid":
            choices.append([str(uuid.UUID(int=1))])
        elif "enum" in schema:
            choices.append(schema["enum"])
        else:
            choices.append(["probe"])
    pieces = re.split(r"\{[^}]+\}", path)
    return [
        "".join(itertools.chain(*itertools.zip_longest(pieces, values, fillvalue=""))) for values in itertools.product(*choices)
    ]


def _endpoint_taking(app: FastAPI, method: str, path: str) -> str | None:
    """The name of the endpoint the application routes ``method path`` to. The router records
    the route it chose in the request's scope before the route runs; what the route then does
    (refuse a missing token, fail for want of a database) does not matter here."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), (b"content-length", b"2")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        pass

    async def request() -> None:
        try:
            await app(scope, receive, send)
        except Exception:  # noqa: BLE001  the lifespan never ran: no database, no runtime
            pass

    asyncio.run(request())
    chosen = scope
    endpoint = chosen.get("endpoint")
    return getattr(endpoint, "__name__", None)


@pytest.mark.parametrize("service", SERVICES)
def test_every_documented_operation_is_reached_by_its_own_paths(service):
    app = _app(service)
    operations = [
        (method.upper(), path, operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "delete", "patch"}
    ]
    assert operations
    for method, template, operation in operations:
        for path in _examples(template, operation.get("parameters", [])):
            taken = _endpoint_taking(app, method, path)
            assert taken == operation["operationId"], f"{method} {path} is handled by {taken}, not {operation['operationId']}"


def test_a_route_declared_after_one_that_fits_its_paths_is_caught():
    """The bulk resolve as it was: declared after the per-saga resolve, it is never reached."""
    app = FastAPI()

    @app.post("/sagas/{saga_id}/resolve")
    async def resolve(saga_id: uuid.UUID) -> None: ...

    @app.post("/sagas/bulk/{action}")
    async def bulk(action: str) -> None: ...

    assert _endpoint_taking(app, "POST", "/sagas/bulk/resolve") == "resolve"
    assert _endpoint_taking(app, "POST", f"/sagas/{uuid.UUID(int=1)}/resolve") == "resolve"
