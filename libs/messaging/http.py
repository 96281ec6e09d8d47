"""The HTTP edge every service shares.

* Every error is a problem document (RFC 9457, ``application/problem+json``): ``type``,
  ``title``, ``status``, a human-readable ``detail``, and for 422 an ``errors`` member
  listing each field error as ``{loc, msg, type}``.
* Operator endpoints need an operator's bearer token (:mod:`messaging.identity`) and a role
  that allows the method; both are checked before anything else about the request, so a
  caller without them learns nothing about what it sent. Writes and refusals are audited
  (:mod:`messaging.audit`).
* The OpenAPI document says all of this: error responses, security, tags and stable
  ``operationId`` s (the route function's name).
"""

from __future__ import annotations

import http
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import sqlalchemy.exc
import structlog
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import audit as audit_log
from . import database
from .audit import AuditLog
from .identity import Authenticator, Identity, Role, token_matches

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
    if database.unavailable(error):
        # Nothing was written (the transaction never began or never committed): the
        # client may simply come back, as after admission control's 503.
        log.warning("request_refused_database_unavailable", method=request.method, path=request.url.path)
        return problem(503, "the database is unavailable or busy; retry shortly", headers={"Retry-After": "1"})
    log.error(
        "request_failed",
        method=request.method,
        route=_route(request),
        error_type=type(error).__name__,
        stack=stack_of(error),
    )
    return problem(500, "internal error; the request may be retried")


def _route(request: Request) -> str:
    """The route's template (``/orders/{order_id}``), not the path, which may name a person's data."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "(no route)"


def stack_of(error: BaseException) -> list[str]:
    """Where ``error`` was raised, as ``file:line in function`` frames, innermost last, with
    each chained cause's type: enough to find the bug, and no message, argument or local
    (which could hold a request's personal data or a secret)."""
    frames: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames[:0] = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(current.__traceback__)] + [
            f"raised {type(current).__module__}.{type(current).__qualname__}"
        ]
        current = current.__cause__ or current.__context__
    return frames


# --------------------------------------------------------------------------- instants
def utc(value: datetime) -> datetime:
    """``value`` in UTC (a value without an offset is taken as UTC). Raises ValueError for an
    instant that exists only in its own offset (``0001-01-01T00:00:00+01:00`` is in year 0 in
    UTC), which Python, the driver and PostgreSQL cannot carry."""
    try:
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError as error:
        raise ValueError("the instant is out of range (years 1 to 9999 in UTC)") from error


Instant = Annotated[datetime, AfterValidator(utc)]
"""A datetime parameter: any ISO 8601 instant in range, as UTC; out of range is a 422."""


# --------------------------------------------------------------------------- operators
def bearer(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>``; None for anything else, however malformed."""
    if not authorization or len(authorization) > MAX_AUTHORIZATION:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials or " " in credentials:
        return None
    # Header values reach us decoded as Latin-1; a token is visible ASCII.
    if not all("!" <= ch <= "~" for ch in credentials):
        return None
    return credentials


def authorized(authorization: str | None, tokens: list[str]) -> bool:
    """True only for ``Bearer <one of tokens>``; anything else, however malformed, is False."""
    token = bearer(authorization)
    return token is not None and bool(tokens) and token_matches(token.encode("latin-1"), tokens)


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="operator",
    description="An operator's personal token (sagactl operators add) or the bootstrap token (SAGA_OPERATOR_TOKEN), "
    "as `Authorization: Bearer <token>`.",
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Guard:
    """What an operator route asks: who the caller is, and where to record what they did."""

    authenticator: Authenticator
    audit: AuditLog | None


async def identify(request: Request) -> Identity | None:
    guard: Guard | None = getattr(request.app.state, "guard", None)
    token = bearer(request.headers.get("authorization"))
    if guard is None or token is None:
        return None
    return await guard.authenticator.identify(token)


async def audit(request: Request, item: audit_log.Entry) -> None:
    guard: Guard | None = getattr(request.app.state, "guard", None)
    if guard is not None and guard.audit is not None:
        await guard.audit.record(item)


class OperatorRoute(APIRoute):
    """A route for operators. Before it reads the body or validates any parameter, it
    answers 401 to a caller without a valid token and 403 to one whose role is too small
    (a viewer may only read; ``required`` raises the bar, to admin for managing operators).
    Every write, and every refusal, goes to the audit log with its outcome."""

    required: Role | None = None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        action = self.name

        async def guarded(request: Request) -> Response:
            identity = await identify(request)
            if identity is None:
                await audit(request, audit_log.entry(request, None, action, 401))
                return problem(401, "operator bearer token required", headers={"WWW-Authenticate": 'Bearer realm="operator"'})
            needed = self.required or (Role.VIEWER if request.method in SAFE_METHODS else Role.OPERATOR)
            if not identity.may(needed):
                await audit(request, audit_log.entry(request, identity, action, 403, needed=needed.value))
                return problem(403, f"{identity.name} is a {identity.role.value}; this needs the {needed.value} role")
            request.state.identity = identity
            if request.method in SAFE_METHODS:
                return await handler(request)
            try:
                response = await handler(request)
            except Exception:
                await audit(request, audit_log.entry(request, identity, action, 500))
                raise
            await audit(request, audit_log.entry(request, identity, action, response.status_code))
            return response

        return guarded


def caller(request: Request) -> Identity:
    """The identity an operator route was called by (OperatorRoute put it there)."""
    return cast(Identity, request.state.identity)


CallerDep = Annotated[Identity, Depends(caller)]
"""The operator calling: the actor of whatever the route does."""


def operator_router(*, required: Role | None = None, **kwargs: Any) -> APIRouter:
    """An ``APIRouter`` whose every route needs an operator's token (and ``required``'s role
    for every method, when given)."""
    route_class = type(f"{(required or 'Operator').title()}Route", (OperatorRoute,), {"required": required})
    return APIRouter(
        route_class=route_class,
        dependencies=[Security(_bearer)],
        responses={
            401: {"description": "No valid operator bearer token"},
            403: {"description": "The operator's role does not allow this"},
        },
        **kwargs,
    )


# --------------------------------------------------------------------------- request bodies
class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413 before any of it is parsed,
    whether the client declared its length or streams it in chunks. Every service has one
    (``<SVC>_MAX_BODY_BYTES``): a request body is read into memory whole."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and not length.isdigit():
            await problem(400, "invalid Content-Length")(scope, receive, send)
            return
        if length is not None and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:  # buffer at most limit + 1 bytes, then replay them to the application
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message)
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
        await self.app(scope, _replay(chunks, receive), send)

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        await problem(413, f"request body over {self.limit} bytes")(scope, receive, send)


def _replay(messages: list[dict[str, Any]], then: Any = None) -> Any:
    pending = list(messages)

    async def receive() -> Any:
        if pending:
            return pending.pop(0)
        return await then() if then else {"type": "http.disconnect"}

    return receive


# --------------------------------------------------------------------------- the application
def operation_id(route: APIRoute) -> str:
    """The route function's name: stable, and unique within a service."""
    return route.name


def install(app: FastAPI) -> None:
    """Problem responses for every error, and an OpenAPI document that says so."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # The database's errors are answered where the route raised them (Starlette's exception
    # middleware), not by the catch-all, which re-raises into the server after answering.
    for database_error in (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.TimeoutError, OSError, TimeoutError):
        app.add_exception_handler(database_error, _unexpected)
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
