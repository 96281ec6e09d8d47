"""The HTTP edge every service shares.

* Every error is a problem document (RFC 9457, ``application/problem+json``): ``type``,
  ``title``, ``status``, a human-readable ``detail``, and for 422 an ``errors`` member
  listing each field error as ``{loc, msg, type}``.
* Operator endpoints sit behind one bearer token (``SAGA_OPERATOR_TOKEN``, plus
  ``SAGA_OPERATOR_TOKEN_PREVIOUS`` while a rotation is under way). The token is checked
  before anything else about the request, so a caller without it learns nothing about
  what it sent.
* The OpenAPI document says all of this: error responses, security, tags and stable
  ``operationId`` s (the route function's name).
"""

from __future__ import annotations

import http
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import sqlalchemy.exc
import structlog
from fastapi import APIRouter, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger("http")

PROBLEM_JSON = "application/problem+json"
Responses = dict[int | str, dict[str, Any]]
"""The type of FastAPI's ``responses=``: extra OpenAPI responses by status code."""

MAX_AUTHORIZATION = 1024  # far above any token we issue; longer headers are refused unread


class FieldError(BaseModel):
    """One field that failed validation."""

    loc: list[str | int] = Field(description="Where: 'body', 'query', 'path' or 'header', then the field's path.")
    msg: str
    type: str = Field(description="Machine-readable error kind, e.g. 'missing' or 'string_pattern_mismatch'.")


class Problem(BaseModel):
    """An error, as RFC 9457 describes it."""

    type: str = Field("about:blank", description="'about:blank': the status code says it all.")
    title: str = Field(description="The status code's phrase.")
    status: int
    detail: str = Field(description="What went wrong with this request, for people.")
    errors: list[FieldError] | None = Field(None, description="On 422: every field error.")


def problem(
    status: int, detail: str, *, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A problem response."""
    body = Problem(title=http.HTTPStatus(status).phrase, status=status, detail=_printable(detail))
    content = body.model_dump(exclude_none=True)
    if errors is not None:
        content["errors"] = errors
    return JSONResponse(content, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _printable(value: Any) -> Any:
    """Lone surrogates from a request cannot be encoded in a UTF-8 response; show them escaped."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def field_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    """Each error as ``{loc, msg, type}``; the input is never echoed (it may be a secret)."""
    return [
        {"loc": [_printable(part) for part in e["loc"]], "msg": _printable(e["msg"]), "type": e["type"]} for e in error.errors()
    ]


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)  # registered for this class only
    return problem(error.status_code, str(error.detail), headers=getattr(error, "headers", None))


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)  # registered for this class only
    errors = field_errors(error)
    fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors[:5])
    return problem(422, f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}: {fields}", errors=errors)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    if _database_unavailable(error):
        # Nothing was written (the transaction never began or never committed): the
        # client may simply come back, as after admission control's 503.
        log.warning("request_refused_database_unavailable", method=request.method, path=request.url.path)
        return problem(503, "the database is unavailable; retry shortly", headers={"Retry-After": "1"})
    log.error("request_failed", method=request.method, path=request.url.path, error_type=type(error).__name__)
    return problem(500, "internal error; the request may be retried")


def _database_unavailable(error: Exception) -> bool:
    """A connection that could not be had, or was lost: the server is down, restarting, or
    out of connections ("too many clients")."""
    if isinstance(error, (sqlalchemy.exc.TimeoutError, OSError, ConnectionError)):
        return True
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        return bool(error.connection_invalidated) or any(
            marker in str(error.orig) for marker in ("too many clients", "not yet accepting connections", "starting up")
        )
    return False


# --------------------------------------------------------------------------- operator token
def authorized(authorization: str | None, tokens: list[str]) -> bool:
    """True only for ``Bearer <one of tokens>``; anything else, however malformed, is False."""
    if not authorization or not tokens or len(authorization) > MAX_AUTHORIZATION:
        return False
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return False
    # Header values reach us decoded as Latin-1, so this encoding cannot fail; comparing
    # bytes also avoids compare_digest's refusal of non-ASCII str.
    return token_matches(credentials.encode("latin-1"), tokens)


def token_matches(given: bytes, tokens: list[str]) -> bool:
    """Whether ``given`` is one of ``tokens``, every one compared in constant time."""
    matches = [secrets.compare_digest(given, token.encode()) for token in tokens]
    return any(matches)


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="operator",
    description="The operator token (SAGA_OPERATOR_TOKEN), as `Authorization: Bearer <token>`.",
)


class OperatorRoute(APIRoute):
    """A route that answers 401 to a request without the operator token before it reads
    the body or validates any parameter."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            settings = request.app.state.runtime.settings
            if not authorized(request.headers.get("authorization"), settings.operator_tokens()):
                return problem(401, "operator bearer token required", headers={"WWW-Authenticate": 'Bearer realm="operator"'})
            return await handler(request)

        return guarded


def operator_router(**kwargs: Any) -> APIRouter:
    """An ``APIRouter`` whose every route needs the operator token."""
    return APIRouter(
        route_class=OperatorRoute,
        dependencies=[Security(_bearer)],
        responses={401: {"description": "No valid operator bearer token"}},
        **kwargs,
    )


# --------------------------------------------------------------------------- the application
def operation_id(route: APIRoute) -> str:
    """The route function's name: stable, and unique within a service."""
    return route.name


def install(app: FastAPI) -> None:
    """Problem responses for every error, and an OpenAPI document that says so."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_problems(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI documents replacing app.openapi to customise the schema


def _document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem_schema.pop("$defs", {}))
    components["Problem"] = problem_schema
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for operation in (op for path in schema.get("paths", {}).values() for op in path.values()):
        if "requestBody" in operation:  # FastAPI's answer to a body that is not even UTF-8 text
            operation["responses"].setdefault("400", {"description": "The body cannot be read as JSON"})
        for status, response in operation.get("responses", {}).items():
            if status.isdigit() and int(status) >= 400:
                response["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
                if status == "422":
                    response["description"] = "Invalid input: every field error is in `errors`"
    return schema
