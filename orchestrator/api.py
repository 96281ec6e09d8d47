"""Saga API: one saga by its (unguessable) id for everyone; listings and operator actions
behind the operator token."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from messaging.http import Responses, operator_router
from messaging.service import RuntimeDep, SessionDep
from messaging.text import Text

from . import dead_letters, operations, repository
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
    responses={404: {"description": "No such saga"}},
)
async def get_saga(saga_id: uuid.UUID, session: SessionDep) -> SagaView:
    state = await repository.load(session, saga_id, lock=False)
    if state is None:
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
) -> list[SagaView]:
    """Sagas newest first, by status, age, definition (``order``, ``order_cancellation``) or subject."""
    older_than = datetime.now(UTC) - timedelta(seconds=older_than_seconds) if older_than_seconds is not None else None
    sagas = await repository.listing(
        session, status=status, limit=limit, older_than=older_than, definition=definition, subject=subject
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
    actor: Text = Field("operator", min_length=1, max_length=100)


class Retry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: Text = Field("operator", min_length=1, max_length=100)


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
) -> list[SagaView]:
    """Sagas by status, age and definition, for the operator's tools (same data as ``GET /sagas``)."""
    return await list_sagas(session, status, limit, older_than_seconds, definition, subject)


@operator.get("/sagas/{saga_id}", response_model=SagaView, responses=NOT_FOUND)
async def operator_get_saga(saga_id: uuid.UUID, session: SessionDep) -> SagaView:
    """One saga's timeline, for the operator's tools (same data as ``GET /sagas/{saga_id}``)."""
    return await get_saga(saga_id, session)


@operator.post("/sagas/{saga_id}/steps/{step}/retry-compensation", response_model=SagaView, responses=NOT_FOUND | CONFLICT)
async def retry_compensation(saga_id: uuid.UUID, step: StepName, body: Retry, rt: RuntimeDep, request: Request) -> SagaView:
    """Send a failed compensation again, once its cause has been fixed."""
    with _refusals():
        return SagaView.of(await operations.retry_compensation(rt, request.app.state.orchestrator, saga_id, step, body.actor))


@operator.post("/sagas/{saga_id}/resolve", response_model=SagaView, responses=NOT_FOUND | CONFLICT)
async def resolve(saga_id: uuid.UUID, body: Resolution, rt: RuntimeDep, request: Request) -> SagaView:
    """Mark a saga compensated after its effect was put right outside the system."""
    with _refusals():
        return SagaView.of(await operations.resolve(rt, request.app.state.orchestrator, saga_id, body.reason, body.actor))


@operator.get("/dead-letters", response_model=list[DeadLetterView])
async def list_dead_letters(
    rt: RuntimeDep, request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[DeadLetterView]:
    """Every message in every dead-letter queue, with its saga and step where known."""
    steps = request.app.state.orchestrator.registry.step_of_message_types()
    return [DeadLetterView(**letter.as_dict()) for letter in await dead_letters.list_all(rt.broker, limit, steps)]


@operator.post("/dead-letters/{queue}/redrive", response_model=RedriveView, responses={404: {"description": "No such queue"}})
async def redrive(queue: QueueName, rt: RuntimeDep, request: Request) -> RedriveView:
    """Move a ``-dlq`` queue's messages back to their queue, or retry every escalated compensation."""
    try:
        return RedriveView(**await operations.redrive(rt, request.app.state.orchestrator, queue, "redrive"))
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
