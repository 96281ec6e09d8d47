"""Saga API: one saga by its (unguessable) id for everyone; listings and operator actions
behind the operator token."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from contracts.messages import CUSTOMER_ID
from messaging.http import CallerDep, Instant, Responses, operator_router
from messaging.identity import NAME, Role
from messaging.service import RuntimeDep, SessionDep
from messaging.text import Text
from messaging.uow import UnitOfWork

from . import dead_letters, erasure, operations, operators, repository
from .engine import SagaState, SagaStatus, StepStatus

router = APIRouter(tags=["sagas"])
guarded = operator_router(tags=["sagas"])
operator = operator_router(prefix="/operator", tags=["operator"])
log = structlog.get_logger("saga_api")


class StepView(BaseModel):
    name: str
    status: StepStatus
    attempts: int
    compensation_attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    deadline: datetime | None
    error: str | None


class HistoryView(BaseModel):
    at: datetime
    event: str
    step: str | None
    detail: str | None
    message_id: uuid.UUID | None


class SagaView(BaseModel):
    saga_id: uuid.UUID
    definition: str
    version: int = Field(description="The version of its definition the saga started on and runs on to its end.")
    paused_at: datetime | None = Field(None, description="Since when the saga is paused (held at its start, or by hand).")
    subject: str
    """What the saga is about: for both order sagas, the order's id."""
    status: SagaStatus
    failed_step: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    steps: list[StepView]
    history: list[HistoryView] | None = None

    @classmethod
    def of(cls, state: SagaState, history: list | None = None) -> SagaView:
        return cls(
            saga_id=state.saga_id,
            definition=state.definition,
            version=state.version,
            paused_at=state.paused_at,
            subject=state.subject,
            status=state.status,
            failed_step=state.failed_step,
            failure_reason=state.failure_reason,
            created_at=state.created_at,
            updated_at=state.updated_at,
            steps=[StepView.model_validate(s, from_attributes=True) for s in state.steps],
            history=None if history is None else [HistoryView.model_validate(h, from_attributes=True) for h in history],
        )


@router.get(
    "/sagas/{saga_id}",
    response_model=SagaView,
    response_model_exclude_none=False,
    responses={
        404: {"description": "No such saga"},
        410: {"description": "The saga finished and was purged after its retention"},
    },
)
async def get_saga(saga_id: uuid.UUID, session: SessionDep) -> SagaView:
    state = await repository.load(session, saga_id, lock=False)
    if state is None:
        if (gone := await repository.purged(session, saga_id)) is not None:
            where = f"archived at {gone['archive']}" if gone["archive"] else "not archived"
            raise HTTPException(
                410,
                f"saga {saga_id} ({gone['definition']}) was {gone['status']} on {gone['finished_at'].isoformat()} and "
                f"purged on {gone['purged_at'].isoformat()} after its retention; {where}",
            )
        raise HTTPException(404, f"no saga {saga_id}")
    return SagaView.of(state, await repository.history(session, saga_id))


@guarded.get("/sagas", response_model=list[SagaView])
async def list_sagas(
    session: SessionDep,
    status: SagaStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    older_than_seconds: Annotated[int | None, Query(ge=0, le=10 * 365 * 86400)] = None,
    definition: Annotated[str | None, Query(pattern=r"^[a-z][a-z_]{0,49}$")] = None,
    subject: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")] = None,
    failed_step: Annotated[str | None, Query(pattern=r"^[a-z][a-z_]{0,63}$")] = None,
    version: Annotated[int | None, Query(ge=1, le=9999)] = None,
    customer_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = None,
    started_after: Instant | None = None,
    started_before: Instant | None = None,
) -> list[SagaView]:
    """Sagas newest first, by status, age, definition (``order``, ``order_cancellation``), subject,
    the step they failed at, version, customer and when they started."""
    older_than = datetime.now(UTC) - timedelta(seconds=older_than_seconds) if older_than_seconds is not None else None
    sagas = await repository.listing(
        session,
        status=status,
        limit=limit,
        older_than=older_than,
        definition=definition,
        subject=subject,
        failed_step=failed_step,
        version=version,
        customer_id=customer_id,
        started_after=started_after,
        started_before=started_before,
    )
    return [SagaView.of(s) for s in sagas]


# --------------------------------------------------------------------------- operator
StepName = Annotated[str, Path(pattern=r"^[a-z][a-z_]{0,63}$")]
QueueName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,79}$")]
NOT_FOUND: Responses = {404: {"description": "No such saga or step"}}
CONFLICT: Responses = {409: {"description": "The saga is not in a state that allows this action"}}


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(min_length=3, max_length=500)
    actor: Text | None = Field(None, max_length=100, description="Ignored: the actor is the caller's identity.", deprecated=True)


class Retry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: Text | None = Field(None, max_length=100, description="Ignored: the actor is the caller's identity.", deprecated=True)


class DeadLetterView(BaseModel):
    queue: str
    sqs_message_id: str
    message_type: str | None
    saga_id: str | None
    step: str | None
    detail: str
    receive_count: int


class RedriveOutcome(BaseModel):
    saga_id: uuid.UUID
    step: str
    outcome: str


class RedriveView(BaseModel):
    queue: str
    method: Literal["StartMessageMoveTask", "message-by-message", "retry-compensation"]
    moved: int | None = Field(description="Messages moved or compensations retried; null while an SQS move task runs.")
    task: str | None = Field(None, description="The SQS move task's handle, when SQS moves the messages itself.")
    sagas: list[RedriveOutcome] | None = Field(None, description="For saga-escalations: each retried compensation.")


@operator.get("/sagas", response_model=list[SagaView])
async def operator_list_sagas(
    session: SessionDep,
    status: SagaStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    older_than_seconds: Annotated[int | None, Query(ge=0, le=10 * 365 * 86400)] = None,
    definition: Annotated[str | None, Query(pattern=r"^[a-z][a-z_]{0,49}$")] = None,
    subject: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")] = None,
    failed_step: Annotated[str | None, Query(pattern=r"^[a-z][a-z_]{0,63}$")] = None,
    version: Annotated[int | None, Query(ge=1, le=9999)] = None,
    customer_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = None,
    started_after: Instant | None = None,
    started_before: Instant | None = None,
) -> list[SagaView]:
    """Sagas by status, age, definition, failed step, version, customer and start time, for the
    operator's tools (same data as ``GET /sagas``)."""
    return await list_sagas(
        session,
        status,
        limit,
        older_than_seconds,
        definition,
        subject,
        failed_step,
        version,
        customer_id,
        started_after,
        started_before,
    )


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: SagaStatus | None = Field(None, description="Only sagas in this status.")
    definition: str | None = Field(None, pattern=r"^[a-z][a-z_]{0,49}$")
    failed_step: str | None = Field(None, pattern=r"^[a-z][a-z_]{0,63}$", description="Only sagas that failed at this step.")
    older_than_seconds: int | None = Field(None, ge=0, le=10 * 365 * 86400, description="Not changed for this long.")
    saga_ids: list[uuid.UUID] | None = Field(
        None, min_length=1, max_length=operations.BULK_BOUND, description="Only these sagas (the ids a dry run returned)."
    )
    dry_run: bool = Field(True, description="Only list what would be acted on (the default: say dry_run=false to act).")
    limit: int = Field(operations.BULK_BOUND, ge=1, le=operations.BULK_BOUND, description="Sagas acted on at most.")
    actor: Text | None = Field(None, max_length=100, description="Ignored: the actor is the caller's identity.", deprecated=True)
    reason: Text = Field("", max_length=500, description="For resolve: what was done by hand, for the audit trail.")


class BulkOutcome(BaseModel):
    saga_id: uuid.UUID
    status: SagaStatus
    outcome: str


class BulkView(BaseModel):
    action: Literal["retry", "resolve"]
    dry_run: bool
    bound: int
    sagas: list[BulkOutcome]


# Declared before /sagas/{saga_id}/...: a path matches the first route that fits it, and
# /sagas/bulk/resolve fits /sagas/{saga_id}/resolve (tests/unit/test_routes.py checks every service).
@operator.post(
    "/sagas/bulk/{action}",
    response_model=BulkView,
    responses={422: {"description": "A bad filter, or a live action without one (nor saga ids)"}},
)
async def bulk(
    action: Literal["retry", "resolve"], body: BulkRequest, rt: RuntimeDep, request: Request, caller: CallerDep
) -> BulkView:
    """Retry or resolve every saga the filter matches, oldest first, at most ``limit`` per request;
    a dry run (the default) lists them. Each saga's history records the action and the actor.
    A live action needs a filter or the saga ids its dry run returned: an empty one answers 422."""
    if action == "resolve" and not body.dry_run and not body.reason:
        raise HTTPException(422, "resolving needs a reason for the audit trail")
    older = datetime.now(UTC) - timedelta(seconds=body.older_than_seconds) if body.older_than_seconds is not None else None
    ids = tuple(body.saga_ids) if body.saga_ids is not None else None
    selection = operations.Selection(body.status, body.definition, body.failed_step, older, ids)
    try:
        outcome = await operations.bulk(
            rt,
            request.app.state.orchestrator,
            action,
            selection,
            actor=caller.name,
            reason=body.reason,
            dry_run=body.dry_run,
            limit=body.limit,
        )
    except operations.EmptySelection as error:
        raise HTTPException(422, str(error)) from error
    return BulkView(**outcome)


@operator.get("/sagas/{saga_id}", response_model=SagaView, responses=NOT_FOUND)
async def operator_get_saga(saga_id: uuid.UUID, session: SessionDep) -> SagaView:
    """One saga's timeline, for the operator's tools (same data as ``GET /sagas/{saga_id}``)."""
    return await get_saga(saga_id, session)


@operator.post("/sagas/{saga_id}/steps/{step}/retry-compensation", response_model=SagaView, responses=NOT_FOUND | CONFLICT)
async def retry_compensation(
    saga_id: uuid.UUID, step: StepName, body: Retry, rt: RuntimeDep, request: Request, caller: CallerDep
) -> SagaView:
    """Send a failed compensation again, once its cause has been fixed."""
    with _refusals():
        return SagaView.of(await operations.retry_compensation(rt, request.app.state.orchestrator, saga_id, step, caller.name))


@operator.post("/sagas/{saga_id}/resolve", response_model=SagaView, responses=NOT_FOUND | CONFLICT)
async def resolve(saga_id: uuid.UUID, body: Resolution, rt: RuntimeDep, request: Request, caller: CallerDep) -> SagaView:
    """Mark a saga compensated after its effect was put right outside the system."""
    with _refusals():
        return SagaView.of(await operations.resolve(rt, request.app.state.orchestrator, saga_id, body.reason, caller.name))


class Pause(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: Text | None = Field(None, max_length=100, description="Ignored: the actor is the caller's identity.", deprecated=True)
    reason: Text = Field("", max_length=500)


class DefinitionPause(BaseModel):
    definition: str
    paused: bool
    resumed_sagas: int | None = Field(None, description="On resume: the sagas held meanwhile, now running.")


DefinitionName = Annotated[str, Path(pattern=r"^[a-z][a-z_]{0,49}$")]


@operator.post("/sagas/{saga_id}/pause", response_model=SagaView, responses=NOT_FOUND | CONFLICT)
async def pause_saga(saga_id: uuid.UUID, body: Pause, rt: RuntimeDep, request: Request, caller: CallerDep) -> SagaView:
    """Pause a saga: no further command is sent and its deadlines wait until it is resumed."""
    with _refusals():
        return SagaView.of(await operations.pause(rt, request.app.state.orchestrator, saga_id, body.reason, caller.name))


@operator.post("/sagas/{saga_id}/resume", response_model=SagaView, responses=NOT_FOUND | CONFLICT)
async def resume_saga(saga_id: uuid.UUID, body: Pause, rt: RuntimeDep, request: Request, caller: CallerDep) -> SagaView:
    """Resume a paused saga: what is due is sent, its budget extended by the time it was paused."""
    with _refusals():
        return SagaView.of(await operations.resume(rt, request.app.state.orchestrator, saga_id, caller.name))


@operator.post("/definitions/{definition}/pause", response_model=DefinitionPause, responses=NOT_FOUND)
async def pause_definition(
    definition: DefinitionName, body: Pause, rt: RuntimeDep, request: Request, caller: CallerDep
) -> DefinitionPause:
    """Hold every new saga of a definition at its start (accepted, not refused) until resumed."""
    with _refusals():
        await operations.pause_definition(rt, request.app.state.orchestrator, definition, body.reason, caller.name)
    return DefinitionPause(definition=definition, paused=True)


@operator.post("/definitions/{definition}/resume", response_model=DefinitionPause, responses=NOT_FOUND)
async def resume_definition(
    definition: DefinitionName, body: Pause, rt: RuntimeDep, request: Request, caller: CallerDep
) -> DefinitionPause:
    """Start a definition's new sagas again and run those held meanwhile, oldest first."""
    with _refusals():
        resumed = await operations.resume_definition(rt, request.app.state.orchestrator, definition, caller.name)
    return DefinitionPause(definition=definition, paused=False, resumed_sagas=resumed)


class VersionView(BaseModel):
    definition: str
    version: int
    running: int = Field(description="Sagas on this version not final yet: at 0 the version can be retired.")
    registered_here: bool = Field(description="Whether this orchestrator runs it (a rolling deploy runs two releases).")
    latest: bool = Field(description="New sagas of this definition start on it here.")
    fingerprint: str | None = Field(description="The hash of its steps (orchestrator/versions.json), when registered here.")


@operator.get("/definitions", response_model=list[VersionView])
async def definition_versions(session: SessionDep, request: Request) -> list[VersionView]:
    """Every version of every saga definition that is registered here or still has sagas
    running, with how many: when an old version's count is 0, a release may drop it."""
    registry = request.app.state.orchestrator.registry
    running = {(d, v): n for d, v, n in await repository.running_by_version(session)}
    keys = sorted(set(running) | set(registry.versions))
    return [
        VersionView(
            definition=name,
            version=version,
            running=running.get((name, version), 0),
            registered_here=(name, version) in registry.versions,
            latest=name in registry.engines and registry.engines[name].definition.version == version,
            fingerprint=engine.definition.fingerprint() if (engine := registry.versions.get((name, version))) else None,
        )
        for name, version in keys
    ]


@operator.get("/dead-letters", response_model=list[DeadLetterView])
async def list_dead_letters(
    rt: RuntimeDep, request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[DeadLetterView]:
    """Every message in every dead-letter queue, with its saga and step where known."""
    steps = request.app.state.orchestrator.registry.step_of_message_types()
    return [DeadLetterView(**letter.as_dict()) for letter in await dead_letters.list_all(rt.broker, limit, steps)]


@operator.post("/dead-letters/{queue}/redrive", response_model=RedriveView, responses={404: {"description": "No such queue"}})
async def redrive(queue: QueueName, rt: RuntimeDep, request: Request, caller: CallerDep) -> RedriveView:
    """Move a ``-dlq`` queue's messages back to their queue, or retry every escalated compensation."""
    try:
        return RedriveView(**await operations.redrive(rt, request.app.state.orchestrator, queue, caller.name))
    except ValueError as error:
        raise HTTPException(404, str(error)) from error


@contextlib.contextmanager
def _refusals():
    """An operator action the saga refuses: 404 for an unknown saga, 409 for a wrong state."""
    try:
        yield
    except LookupError as error:
        raise HTTPException(404, str(error)) from error
    except ValueError as error:
        raise HTTPException(409, str(error)) from error


# --------------------------------------------------------------------------- erasure
CustomerId = Annotated[str, Field(pattern=CUSTOMER_ID)]


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: CustomerId
    reason: Text = Field(min_length=3, max_length=500, description="Why: the data subject's request, its reference")


class ErasureView(BaseModel):
    erasure_id: uuid.UUID
    customer_id: str
    reason: str
    requested_by: str
    requested_at: datetime
    orders: int = Field(description="The customer's orders the sagas named, whose records the participants erase")
    answers: dict[str, int] = Field(description="Each service that has erased, and how many of its records")
    waiting_for: list[str]
    status: Literal["in_progress", "completed"]
    completed_at: datetime | None


@operator.post("/erasures", response_model=ErasureView, status_code=201)
async def request_erasure(body: ErasureRequest, rt: RuntimeDep, caller: CallerDep, response: Response) -> ErasureView:
    """Erase a customer's personal data everywhere (email, address, notification texts, card
    fingerprints), keeping the books: the orchestrator erases its own at once and asks every
    participant by message; follow ``Location`` until ``status`` is ``completed``."""
    async with UnitOfWork(rt.sessions, rt.name) as uow:
        view = await erasure.request(uow, body.customer_id, body.reason, caller.name)
        await uow.commit()
    response.headers["Location"] = f"/operator/erasures/{view['erasure_id']}"
    return ErasureView(**view)


@operator.get("/erasures/{erasure_id}", response_model=ErasureView, responses={404: {"description": "No such erasure"}})
async def get_erasure(erasure_id: uuid.UUID, session: SessionDep) -> ErasureView:
    view = await erasure.view(session, erasure_id)
    if view is None:
        raise HTTPException(404, f"no erasure {erasure_id}")
    return ErasureView(**view)


@operator.get("/erasures", response_model=list[ErasureView])
async def list_erasures(
    session: SessionDep,
    customer_id: Annotated[str | None, Query(pattern=CUSTOMER_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ErasureView]:
    """The erasures asked for, newest first (of one customer if named)."""
    return [ErasureView(**view) for view in await erasure.listing(session, customer_id, limit)]


# --------------------------------------------------------------------------- operators
admin = operator_router(prefix="/operator", tags=["operators"], required=Role.ADMIN)
OperatorName = Annotated[str, Path(pattern=rf"^{NAME}$")]


class WhoAmI(BaseModel):
    name: str
    role: Role


@operator.get("/whoami", response_model=WhoAmI)
async def whoami(caller: CallerDep) -> WhoAmI:
    """Whose the bearer token is: every service asks this of the orchestrator (SAGA_IDENTITY_URL)."""
    return WhoAmI(name=caller.name, role=caller.role)


class NewOperator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=rf"^{NAME}$", description="Lower case: letters, digits and ._- (2 to 63).")
    role: Role
    expires_in_days: int | None = Field(None, ge=1, le=3660, description="The token stops working after this; never when null.")


class IssuedView(BaseModel):
    name: str
    role: Role
    token: str = Field(description="The personal token, shown this once: only its hash is kept.")
    created_at: datetime
    expires_at: datetime | None


class OperatorView(BaseModel):
    name: str
    role: Role
    created_at: datetime
    created_by: str
    expires_at: datetime | None


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_seconds: int = Field(0, ge=0, le=7 * 86400, description="How long the old token keeps working.")


@admin.post("/operators", status_code=201, response_model=IssuedView, responses={409: {"description": "The name has a token"}})
async def add_operator(body: NewOperator, session: SessionDep, caller: CallerDep) -> IssuedView:
    """Issue a personal token to a new operator (admin only)."""
    expires = datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    try:
        issued = await operators.issue(session, body.name, body.role, caller.name, expires_at=expires)
    except ValueError as error:
        raise HTTPException(409, str(error)) from error
    await session.commit()
    log.warning("operator_issued", name=body.name, role=body.role.value, by=caller.name)
    return IssuedView(**vars(issued))


@admin.get("/operators", response_model=list[OperatorView])
async def list_operators(session: SessionDep) -> list[OperatorView]:
    """Every operator with a valid token (two rows for one whose token is being rotated)."""
    return [OperatorView(**row) for row in await operators.listing(session)]


@admin.post("/operators/{name}/rotate", response_model=IssuedView, responses={404: {"description": "No such operator"}})
async def rotate_operator(name: OperatorName, body: Rotation, session: SessionDep, caller: CallerDep) -> IssuedView:
    """A new token for the operator, same role; the old one works ``grace_seconds`` longer. No redeploy."""
    try:
        issued = await operators.rotate(session, name, caller.name, timedelta(seconds=body.grace_seconds))
    except LookupError as error:
        raise HTTPException(404, str(error)) from error
    await session.commit()
    log.warning("operator_rotated", name=name, by=caller.name, grace_seconds=body.grace_seconds)
    return IssuedView(**vars(issued))


@admin.delete("/operators/{name}", status_code=204, responses={404: {"description": "No such operator"}})
async def revoke_operator(name: OperatorName, session: SessionDep, caller: CallerDep) -> Response:
    """Revoke every token of the operator and end their console sessions, at once here (other
    services stop accepting it within SAGA_IDENTITY_CACHE_SECONDS)."""
    try:
        await operators.revoke(session, name, caller.name)
    except LookupError as error:
        raise HTTPException(404, str(error)) from error
    await session.commit()
    log.warning("operator_revoked", name=name, by=caller.name)
    return Response(status_code=204)
