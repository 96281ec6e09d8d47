"""The console's pages and actions. Reads come from :mod:`.queries`; actions from
:mod:`orchestrator.operations`; drawing from :mod:`.views`."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import jinja2
import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from messaging import audit, http
from messaging.service import RuntimeDep, SessionDep

from .. import dead_letters, operations, repository
from ..engine import SagaStatus, StepStatus
from ..operators import OperatorTable, Session, close_session, find_session, open_session
from . import queries, views

# The service is named here: request handlers do not inherit the lifespan's log context.
log = structlog.get_logger("console", service="orchestrator")
HERE = Path(__file__).parent
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined)
)
router = APIRouter(prefix="/console", include_in_schema=False)
templates.env.filters.update(
    ts=lambda at: at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "",
    clock=lambda at: at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3] if at else "",
    seconds=lambda s: "" if s is None else f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s" if s < 60 else f"{s / 60:.1f} min",
    short=lambda value: str(value)[:8],
    age=lambda s: (
        f"{s:.0f} s"
        if s < 90
        else f"{s / 60:.0f} min"
        if s < 5400
        else f"{s / 3600:.1f} h"
        if s < 172800
        else f"{s / 86400:.0f} d"
    ),
    label=lambda status: str(status).replace("_", " "),
)

COOKIE = "saga_console"
PAGE_SIZE = 50
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
HEADERS = {
    # Defence in depth behind the escaping: no inline script or style runs, no page frames this one.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# --------------------------------------------------------------------------- sign-in
def _guard(request: Request) -> http.Guard:
    return request.app.state.guard


def _directory(request: Request) -> OperatorTable:
    return _guard(request).authenticator.directory  # type: ignore[return-value]  # the orchestrator's own table


async def _session(request: Request) -> Session | None:
    """The operator signed in on this browser: the cookie names a session that is neither
    expired nor signed out of, opened with a token that is still valid."""
    secret = request.cookies.get(COOKIE)
    if not secret:
        return None
    async with request.app.state.runtime.sessions() as db:
        return await find_session(db, _directory(request), secret)


async def _audit(request: Request, session: Session | None, action: str, status: int, **detail) -> None:
    await http.audit(request, audit.entry(request, session.identity if session else None, f"console.{action}", status, **detail))


async def _form(request: Request, session: Session) -> dict[str, str] | None:
    """The posted form, or None when its CSRF token is not this session's."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    return form if secrets.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()) else None


async def _may_act(request: Request, session: Session, action: str) -> tuple[dict[str, str] | None, Response | None]:
    """The form of an action, or the answer that refuses it: 403 for a form of another session
    and for a viewer (who is shown no buttons, but may still post). Refusals are audited."""
    if (form := await _form(request, session)) is None:
        await _audit(request, session, action, 403, reason="csrf")
        return None, _csrf_refused(request, session)
    if not session.may_act:
        await _audit(request, session, action, 403, needed="operator")
        return None, _problem(request, session, 403, f"{session.name} is a viewer: viewers see, operators act.")
    return form, None


def _safe_next(target: str | None) -> str:
    """Only a path of the console itself: never an address elsewhere after sign-in."""
    if target and target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console"


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    return _sign_in(request, next)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    token = form.get("token", "")
    identity = await _guard(request).authenticator.identify(token) if 16 <= len(token) <= 512 else None
    if identity is None:
        log.info("console_sign_in_refused")
        await _audit(request, None, "sign_in", 401)
        return _sign_in(request, form.get("next"), error="That is not a valid operator token.")
    rt = request.app.state.runtime
    async with rt.sessions.begin() as db:
        session = await open_session(
            db,
            identity,
            token,
            timedelta(seconds=rt.settings.console.session_seconds),
            request.client.host if request.client else None,
        )
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    response.set_cookie(
        COOKIE,
        session.secret,
        max_age=int(rt.settings.console.session_seconds),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=secure_cookie(request.url.scheme, request.url.hostname),
    )
    log.info("console_signed_in", actor=identity.name, role=identity.role.value)
    await _audit(request, session, "sign_in", 303)
    return _secure(response)


LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def secure_cookie(scheme: str, host: str | None) -> bool:
    """The session cookie is ``Secure`` everywhere but on this machine: behind a load balancer
    that ends TLS the request reaches the console as plain http, and the browser must still
    never send the cookie over anything but https. Only a console opened on a loopback address
    (``make up``), which browsers treat as secure anyway, is served without it."""
    return scheme == "https" or (host or "").lower() not in LOOPBACK


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = await _session(request)
    if session is not None:
        if await _form(request, session) is None:
            return _problem(request, session, 403, "This form is not from this console session.")
        async with request.app.state.runtime.sessions.begin() as db:
            await close_session(db, session.secret)
        await _audit(request, session, "sign_out", 303)
    response = RedirectResponse("/console", status_code=303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")
    return _secure(response)


def _sign_in(request: Request, next: str | None, error: str | None = None) -> Response:
    hours = request.app.state.runtime.settings.console.session_seconds / 3600
    return _render(request, None, "sign_in.html", 401, next=_safe_next(next or request.url.path), error=error, hours=f"{hours:g}")


# --------------------------------------------------------------------------- pages
@router.get("", response_class=HTMLResponse)
async def overview(
    request: Request, db: SessionDep, rt: RuntimeDep, done: str | None = None, queue: str = "", moved: str = ""
) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, "/console")
    notice = f"Redrove {queue}: {moved or 'a move task for all'} message(s)." if done == "redriven" else None
    return _render(request, session, "overview.html", notice=notice, **await _live(request, db, rt))


@router.get("/live", response_class=HTMLResponse)
async def overview_live(request: Request, db: SessionDep, rt: RuntimeDep) -> Response:
    """The overview's live part alone, which the page fetches again every few seconds."""
    if (session := await _session(request)) is None:
        return _secure(HTMLResponse("", status_code=401))
    return _render(request, session, "_live.html", **await _live(request, db, rt))


async def _live(request: Request, db, rt) -> dict:
    settings = rt.settings.console
    now = datetime.now(UTC)
    counts = await queries.counts(db)
    for name in _definitions(request):
        counts.setdefault(name, {})
    waiting, stuck = await queries.needing_attention(db, now - timedelta(seconds=settings.stuck_after))
    try:
        depths = await dead_letters.depths(rt.broker)
    except Exception:  # noqa: BLE001 - the broker being away must not take the overview with it
        log.warning("console_depths_failed", exc_info=True)
        depths = None
    return {
        "counts": dict(sorted(counts.items())),
        "chart": views.last_hour_chart(await queries.last_hour(db, now), now),
        "waiting": waiting,
        "stuck": stuck,
        "depths": depths,
        "stuck_after": settings.stuck_after,
        "now": now,
        "refresh_ms": int(settings.refresh_seconds * 1000),
    }


@router.get("/sagas", response_class=HTMLResponse)
async def saga_list(
    request: Request,
    db: SessionDep,
    status: str | None = None,
    definition: str | None = None,
    order_id: str | None = None,
    older_than: str | None = None,
    newer_than: str | None = None,
    customer_id: str | None = None,
    failed_step: str | None = None,
    version: str | None = None,
    cursor: str | None = None,
) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""))
    chosen = {
        "status": status or "",
        "definition": definition or "",
        "order_id": (order_id or "").strip(),
        "older_than": older_than or "",
        "newer_than": newer_than or "",
        "customer_id": (customer_id or "").strip(),
        "failed_step": (failed_step or "").strip(),
        "version": (version or "").strip(),
    }
    try:
        filters = _filters(chosen)
        after = queries.Cursor.decode(cursor) if cursor else None
    except ValueError as error:
        return _render(
            request,
            session,
            "sagas.html",
            400,
            error=str(error),
            chosen=chosen,
            rows=[],
            next_url=None,
            definitions=_definitions(request),
            statuses=views.SAGA_STATUSES,
            first_url=None,
            now=_now(),
        )
    now = _now()
    rows, next_cursor = await queries.page(db, filters, after, PAGE_SIZE, now)
    query = {k: v for k, v in chosen.items() if v}
    next_url = f"/console/sagas?{urlencode(query | {'cursor': next_cursor.encode()})}" if next_cursor else None
    first_url = f"/console/sagas?{urlencode(query)}" if after else None
    return _render(
        request,
        session,
        "sagas.html",
        rows=rows,
        chosen=chosen,
        next_url=next_url,
        first_url=first_url,
        definitions=_definitions(request),
        statuses=views.SAGA_STATUSES,
        error=None,
        now=now,
    )


def _filters(chosen: dict[str, str]) -> queries.Filters:
    if chosen["status"] and chosen["status"] not in views.SAGA_STATUSES:
        raise ValueError(f"unknown status {chosen['status']!r}")
    if len(chosen["definition"]) > 50:
        raise ValueError("definition names are at most 50 characters")
    try:
        order_id = uuid.UUID(chosen["order_id"]) if chosen["order_id"] else None
    except ValueError as error:
        raise ValueError("an order id is a UUID") from error
    if chosen["customer_id"] and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", chosen["customer_id"]):
        raise ValueError("a customer id is 1 to 64 letters, digits or _.:-")
    if chosen["failed_step"] and not re.fullmatch(r"[a-z][a-z_]{0,63}", chosen["failed_step"]):
        raise ValueError("a step name is lower case letters and _")
    if chosen["version"] and not (chosen["version"].isdigit() and 0 < int(chosen["version"]) < 10_000):
        raise ValueError("a version is a whole number")
    return queries.Filters(
        chosen["status"] or None,
        chosen["definition"] or None,
        order_id,
        _minutes(chosen["older_than"], "older than"),
        _minutes(chosen["newer_than"], "newer than"),
        chosen["customer_id"] or None,
        chosen["failed_step"] or None,
        int(chosen["version"]) if chosen["version"] else None,
    )


def _minutes(text: str, what: str) -> timedelta | None:
    if not text:
        return None
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1
    if not 0 <= minutes <= 60 * 24 * 366:
        raise ValueError(f"'{what}' is a number of minutes")
    return timedelta(minutes=minutes)


@router.get("/sagas/{saga_id}", response_class=HTMLResponse)
async def saga_page(request: Request, saga_id: str, db: SessionDep, rt: RuntimeDep, done: str | None = None) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, str(request.url.path))
    return await _saga(request, session, db, rt, saga_id, notice=_NOTICES.get(done or ""))


_NOTICES = {
    "resolved": "Resolved by hand: the reason is in the history.",
    "retried": "Compensation sent again.",
    "redriven": "Dead-letter queue redriven.",
    "paused": "Paused: no command is sent and its deadlines wait until it is resumed.",
    "resumed": "Resumed: what was due is sent.",
}


async def _saga(
    request: Request,
    session: Session,
    db,
    rt,
    saga_id: str,
    status: int = 200,
    notice: str | None = None,
    error: str | None = None,
    reason: str = "",
) -> Response:
    try:
        state = await repository.load(db, uuid.UUID(saga_id), lock=False)
    except ValueError:
        state = None
    if state is None:
        return _problem(request, session, 404, f"There is no saga {saga_id}.")
    history = await repository.history(db, state.saga_id)
    definition = _definition(request, state.definition)
    try:
        steps = request.app.state.orchestrator.registry.step_of_message_types()
        letters = [d for d in await dead_letters.list_all(rt.broker, 100, steps) if d.saga_id == str(state.saga_id)]
    except Exception:  # noqa: BLE001 - the page is still worth showing without them
        log.warning("console_dead_letters_failed", exc_info=True)
        letters = None
    return _render(
        request,
        session,
        "saga.html",
        status,
        saga=state,
        history=history,
        timeline=views.timeline(history),
        diagram=views.state_diagram(definition, state, history),
        letters=letters,
        links=_links(rt, state, (await repository.trace_contexts(db, [state.saga_id])).get(state.saga_id)),
        retryable=[s.name for s in state.steps if s.status in (StepStatus.COMPENSATION_FAILED, StepStatus.ESCALATED)],
        resolvable=state.status in (SagaStatus.NEEDS_INTERVENTION, SagaStatus.COMPENSATING),
        pausable=state.status not in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED),
        notice=notice,
        error=error,
        reason=reason,
    )


def _links(rt, state, trace: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The order and each participant's record of it, on their own services' APIs; the saga's
    trace, when it was traced and a trace viewer is configured."""
    links, order = rt.settings.console.links, state.data.get("order_id", state.subject)
    found = [
        *([("trace", url)] if (url := views.trace_url(rt.settings.console.trace_url, trace)) else []),
        ("order", f"{links.order}/orders/{order}"),
        ("payments and refunds", f"{links.payment}/payments?{urlencode({'order_id': order})}"),
        ("shipments", f"{links.fulfillment}/shipments?{urlencode({'order_id': order})}"),
        ("notifications", f"{links.notification}/notifications?{urlencode({'order_id': order})}"),
    ]
    for item in state.data.get("items", []):
        found.append((f"stock of {item['sku']}", f"{links.inventory}/stock/{item['sku']}"))
    return found


# --------------------------------------------------------------------------- actions
@router.post("/sagas/{saga_id}/resolve")
async def resolve(request: Request, saga_id: uuid.UUID, db: SessionDep, rt: RuntimeDep) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, f"/console/sagas/{saga_id}")
    form, refused = await _may_act(request, session, "resolve")
    if refused or form is None:
        return refused or _csrf_refused(request, session)
    reason = form.get("reason", "").strip()
    if not 3 <= len(reason) <= 500:
        return await _saga(
            request, session, db, rt, str(saga_id), 422, reason=reason, error="A reason of 3 to 500 characters is needed."
        )
    return await _acting(
        request,
        session,
        db,
        rt,
        saga_id,
        "resolved",
        lambda: operations.resolve(rt, request.app.state.orchestrator, saga_id, reason, session.actor),
        reason,
    )


@router.post("/sagas/{saga_id}/steps/{step}/retry-compensation")
async def retry_compensation(request: Request, saga_id: uuid.UUID, step: str, db: SessionDep, rt: RuntimeDep) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, f"/console/sagas/{saga_id}")
    _, refused = await _may_act(request, session, "retry_compensation")
    if refused:
        return refused
    return await _acting(
        request,
        session,
        db,
        rt,
        saga_id,
        "retried",
        lambda: operations.retry_compensation(rt, request.app.state.orchestrator, saga_id, step, session.actor),
    )


@router.post("/sagas/{saga_id}/pause")
async def pause(request: Request, saga_id: uuid.UUID, db: SessionDep, rt: RuntimeDep) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, f"/console/sagas/{saga_id}")
    form, refused = await _may_act(request, session, "pause")
    if refused or form is None:
        return refused or _csrf_refused(request, session)
    reason = form.get("reason", "").strip()[:500]
    return await _acting(
        request,
        session,
        db,
        rt,
        saga_id,
        "paused",
        lambda: operations.pause(rt, request.app.state.orchestrator, saga_id, reason, session.actor),
        reason,
    )


@router.post("/sagas/{saga_id}/resume")
async def resume(request: Request, saga_id: uuid.UUID, db: SessionDep, rt: RuntimeDep) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, f"/console/sagas/{saga_id}")
    _, refused = await _may_act(request, session, "resume")
    if refused:
        return refused
    return await _acting(
        request,
        session,
        db,
        rt,
        saga_id,
        "resumed",
        lambda: operations.resume(rt, request.app.state.orchestrator, saga_id, session.actor),
    )


# --------------------------------------------------------------------------- many sagas, definitions
@router.get("/bulk", response_class=HTMLResponse)
async def bulk_page(request: Request, db: SessionDep) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, "/console/bulk")
    if not session.may_act:
        return _problem(request, session, 403, f"{session.name} is a viewer: viewers see, operators act.")
    return await _bulk_page(request, session, db)


async def _bulk_page(request, session, db, status: int = 200, **context) -> Response:
    paused = {row.definition: row for row in await repository.paused_definitions_now(db)}
    context.setdefault(
        "chosen", {"action": "retry", "status": "needs_intervention", "definition": "", "failed_step": "", "reason": ""}
    )
    return _render(
        request,
        session,
        "bulk.html",
        status,
        definitions=_definitions(request),
        statuses=views.SAGA_STATUSES,
        paused=paused,
        **({"outcome": None, "error": None} | context),
    )


@router.post("/bulk", response_class=HTMLResponse)
async def bulk_action(request: Request, db: SessionDep, rt: RuntimeDep) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, "/console/bulk")
    form, refused = await _may_act(request, session, "bulk")
    if refused or form is None:
        return refused or _csrf_refused(request, session)
    chosen = {key: form.get(key, "").strip() for key in ("action", "status", "definition", "failed_step", "reason", "run")}
    action = chosen["action"]
    problems = []
    if action not in ("retry", "resolve"):
        problems.append("the action is retry or resolve")
    if chosen["status"] and chosen["status"] not in views.SAGA_STATUSES:
        problems.append(f"unknown status {chosen['status']!r}")
    if chosen["failed_step"] and not re.fullmatch(r"[a-z][a-z_]{0,63}", chosen["failed_step"]):
        problems.append("a step name is lower case letters and _")
    run = chosen["run"] == "1"
    if action == "resolve" and run and len(chosen["reason"]) < 3:
        problems.append("resolving needs a reason of 3 characters or more")
    if problems:
        return await _bulk_page(request, session, db, 422, chosen=chosen, error="; ".join(problems))
    selection = operations.Selection(chosen["status"] or None, chosen["definition"] or None, chosen["failed_step"] or None)
    try:
        outcome = await operations.bulk(
            rt, request.app.state.orchestrator, action, selection, actor=session.actor, reason=chosen["reason"], dry_run=not run
        )
    except operations.EmptySelection as error:
        if run:
            await _audit(request, session, f"bulk_{action}", 422)
        return await _bulk_page(request, session, db, 422, chosen=chosen, error=str(error))
    if run:
        await _audit(request, session, f"bulk_{action}", 200, sagas=[str(s["saga_id"]) for s in outcome["sagas"]][:100])
    log.info("console_bulk", action=action, dry_run=not run, sagas=len(outcome["sagas"]), actor=session.actor)
    return await _bulk_page(request, session, db, chosen=chosen, outcome=outcome)


@router.post("/definitions/{definition}/{verb}", response_class=HTMLResponse)
async def definition_pause(request: Request, definition: str, verb: str, db: SessionDep, rt: RuntimeDep) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, "/console/bulk")
    form, refused = await _may_act(request, session, f"definition_{verb}"[:40])
    if refused or form is None:
        return refused or _csrf_refused(request, session)
    if verb not in ("pause", "resume"):
        return _problem(request, session, 404, f"There is no action {verb!r}.")
    try:
        if verb == "pause":
            reason = form.get("reason", "").strip()[:500]
            await operations.pause_definition(rt, request.app.state.orchestrator, definition, reason, session.actor)
            notice = f"New {definition} sagas are held at their start until resumed."
        else:
            resumed = await operations.resume_definition(rt, request.app.state.orchestrator, definition, session.actor)
            notice = f"{definition} resumed: {resumed} held saga(s) running, oldest first."
    except LookupError:
        await _audit(request, session, f"definition_{verb}", 404)
        return _problem(request, session, 404, f"There is no saga definition {definition!r}.")
    await _audit(request, session, f"definition_{verb}", 200)
    log.info("console_definition", definition=definition, verb=verb, actor=session.actor)
    return await _bulk_page(request, session, db, notice=notice)


async def _acting(request, session, db, rt, saga_id: uuid.UUID, done: str, action, reason: str = "") -> Response:
    try:
        await action()
    except LookupError:
        await _audit(request, session, done, 404)
        return _problem(request, session, 404, f"There is no saga {saga_id}.")
    except ValueError as error:
        await _audit(request, session, done, 409)
        return await _saga(request, session, db, rt, str(saga_id), 409, error=str(error), reason=reason)
    await _audit(request, session, done, 303)
    log.info("console_action", action=done, saga_id=str(saga_id), actor=session.actor)
    return _secure(RedirectResponse(f"/console/sagas/{saga_id}?done={done}", status_code=303))


@router.post("/dead-letters/{queue}/redrive")
async def redrive(request: Request, queue: str, rt: RuntimeDep) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, "/console")
    form, refused = await _may_act(request, session, "redrive")
    if refused or form is None:
        return refused or _csrf_refused(request, session)
    try:
        outcome = await operations.redrive(rt, request.app.state.orchestrator, queue, session.actor)
    except ValueError as error:
        await _audit(request, session, "redrive", 404)
        return _problem(request, session, 404, str(error))
    await _audit(request, session, "redrive", 303, moved=outcome.get("moved"))
    log.info("console_action", action="redrive", queue=queue, actor=session.actor, moved=outcome.get("moved"))
    back = _safe_next(form.get("back"))
    moved = outcome.get("moved")
    separator = "&" if "?" in back else "?"
    return _secure(
        RedirectResponse(
            f"{back}{separator}{urlencode({'done': 'redriven', 'queue': queue, 'moved': '' if moved is None else moved})}",
            status_code=303,
        )
    )


def _csrf_refused(request: Request, session: Session) -> Response:
    log.warning("console_csrf_refused", path=request.url.path)
    return _problem(
        request,
        session,
        403,
        "This form did not come from this console session, so nothing was done. Reload the page and try again.",
    )


# --------------------------------------------------------------------------- audit
AUDIT_PAGE = 100


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request, db: SessionDep, actor: str | None = None, outcome: str | None = None, before: str | None = None
) -> Response:
    if (session := await _session(request)) is None:
        return _sign_in(request, "/console/audit")
    chosen = {"actor": (actor or "").strip()[:100], "outcome": outcome if outcome in audit.OUTCOMES else ""}
    before_id = int(before) if before and before.isdigit() and len(before) < 19 else None
    guard = _guard(request)
    assert guard.audit is not None
    entries = await guard.audit.read(
        db, actor=chosen["actor"] or None, outcome=chosen["outcome"] or None, before_id=before_id, limit=AUDIT_PAGE
    )
    query = {k: v for k, v in chosen.items() if v}
    older_url = f"/console/audit?{urlencode(query | {'before': entries[-1]['id']})}" if len(entries) == AUDIT_PAGE else None
    return _render(request, session, "audit.html", entries=entries, chosen=chosen, outcomes=audit.OUTCOMES, older_url=older_url)


# --------------------------------------------------------------------------- rendering
@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        return Response(status_code=404)
    return FileResponse(HERE / "static" / name, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})


def _definitions(request: Request) -> list[str]:
    return list(request.app.state.orchestrator.registry.engines)


def _definition(request: Request, name: str):
    engine = request.app.state.orchestrator.registry.engines.get(name)
    return engine.definition if engine else None


def _now() -> datetime:
    return datetime.now(UTC)


def _problem(request: Request, session: Session | None, status: int, message: str) -> Response:
    heading = {403: "Refused: nothing was done", 404: "Not found"}.get(status, "Nothing was done")
    return _render(request, session, "problem.html", status, message=message, heading=heading)


def _render(request: Request, session: Session | None, template: str, status: int = 200, **context) -> Response:
    context.setdefault("now", _now())
    context.setdefault("notice", None)
    return _secure(templates.TemplateResponse(request, template, {"session": session, **context}, status_code=status))


def _secure(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response
