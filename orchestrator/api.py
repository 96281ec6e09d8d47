"""Saga API: read-only views for everyone, operator actions behind a bearer token."""
from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from messaging.service import RuntimeDep, SessionDep
from messaging.topology import SAGA_ESCALATIONS
from messaging.uow import UnitOfWork

from . import dead_letters, repository
from .engine import SagaState

router = APIRouter()
log = structlog.get_logger("saga_api")
SagaStatus = Literal["running", "compensating", "completed", "compensated", "needs_intervention"]


class StepView(BaseModel):
    name: str
    status: str
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
    order_id: uuid.UUID
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
            saga_id=state.saga_id, order_id=state.data["order_id"], status=state.status,
            failed_step=state.failed_step, failure_reason=state.failure_reason,
            created_at=state.created_at, updated_at=state.updated_at,
            steps=[StepView.model_validate(s, from_attributes=True) for s in state.steps],
            history=None if history is None else [HistoryView.model_validate(h, from_attributes=True) for h in history],
        )


@router.get("/sagas/{saga_id}", response_model=SagaView, response_model_exclude_none=False)
async def get_saga(saga_id: uuid.UUID, session: SessionDep) -> SagaView:
    state = await repository.load(session, saga_id, lock=False)
    if state is None:
        raise HTTPException(404, f"no saga {saga_id}")
    return SagaView.of(state, await repository.history(session, saga_id))


@router.get("/sagas", response_model=list[SagaView])
async def list_sagas(
    session: SessionDep,
    status: SagaStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    older_than_seconds: Annotated[int | None, Query(ge=0)] = None,
) -> list[SagaView]:
    older_than = datetime.now(UTC) - timedelta(seconds=older_than_seconds) if older_than_seconds is not None else None
    return [SagaView.of(s) for s in await repository.listing(session, status=status, limit=limit, older_than=older_than)]


# --------------------------------------------------------------------------- operator
_bearer = HTTPBearer(auto_error=False)


def operator(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    expected = request.app.state.runtime.settings.operator_token
    if not credentials or not expected or not secrets.compare_digest(credentials.credentials, expected):
        raise HTTPException(401, "operator bearer token required", headers={"WWW-Authenticate": "Bearer"})
    return "operator"


Operator = Annotated[str, Depends(operator)]
operator_router = APIRouter(prefix="/operator")


class Resolution(BaseModel):
    reason: str = Field(min_length=3, max_length=500)
    actor: str = Field("operator", min_length=1, max_length=100)


class Retry(BaseModel):
    actor: str = Field("operator", min_length=1, max_length=100)


@operator_router.get("/sagas", response_model=list[SagaView])
async def operator_list_sagas(
    session: SessionDep, _: Operator, status: SagaStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, older_than_seconds: Annotated[int | None, Query(ge=0)] = None,
) -> list[SagaView]:
    """Sagas by status and age, for the operator's tools (same data as ``GET /sagas``)."""
    return await list_sagas(session, status, limit, older_than_seconds)


@operator_router.get("/sagas/{saga_id}", response_model=SagaView)
async def operator_get_saga(saga_id: uuid.UUID, session: SessionDep, _: Operator) -> SagaView:
    """One saga's timeline, for the operator's tools (same data as ``GET /sagas/{saga_id}``)."""
    return await get_saga(saga_id, session)


@operator_router.post("/sagas/{saga_id}/steps/{step}/retry-compensation", response_model=SagaView)
async def retry_compensation(saga_id: uuid.UUID, step: str, body: Retry, rt: RuntimeDep, request: Request,
                             _: Operator) -> SagaView:
    state = await _act(rt, request, lambda orch, uow: orch.retry_compensation(uow, saga_id, step, body.actor))
    await _discard(rt, _escalations(state, step))
    return SagaView.of(state)


@operator_router.post("/sagas/{saga_id}/resolve", response_model=SagaView)
async def resolve(saga_id: uuid.UUID, body: Resolution, rt: RuntimeDep, request: Request, _: Operator) -> SagaView:
    state = await _act(rt, request, lambda orch, uow: orch.resolve(uow, saga_id, body.reason, body.actor))
    await _discard(rt, _escalations(state, None))
    return SagaView.of(state)


def _escalations(state: SagaState, step: str | None) -> set[str]:
    """Ids of the escalations raised for ``step`` (every step if None) before an operator acted;
    one a retry raises by failing again comes later, under a new id, and stays."""
    return {i for s in state.steps if step in (None, s.name) for i in s.escalation_ids}


async def _discard(rt, escalation_ids: set[str]) -> None:
    """Tidy the escalation queue after an action that has committed: best effort, since
    failing here must not make a done action look undone (a stale escalation is skipped by
    the next redrive)."""
    try:
        await dead_letters.discard_escalations(rt.broker, escalation_ids)
    except Exception:  # noqa: BLE001
        log.warning("escalation_discard_failed", exc_info=True)


@operator_router.get("/dead-letters")
async def list_dead_letters(rt: RuntimeDep, request: Request, _: Operator,
                            limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict]:
    """Every message in every dead-letter queue, with its saga and step where known."""
    steps = request.app.state.orchestrator.engine.step_of_message_types()
    return [letter.as_dict() for letter in await dead_letters.list_all(rt.broker, limit, steps)]


@operator_router.post("/dead-letters/{queue}/redrive")
async def redrive(queue: str, rt: RuntimeDep, request: Request, _: Operator) -> dict:
    """Move a ``-dlq`` queue's messages back to their queue, or retry every escalated compensation."""
    if queue == SAGA_ESCALATIONS:
        async def retry(saga_id: uuid.UUID, step: str) -> tuple[str, set[str]]:
            try:
                state = await _act(rt, request, lambda orch, uow: orch.retry_compensation(uow, saga_id, step, "redrive"))
                return "compensation retried", _escalations(state, step)
            except HTTPException as error:
                return f"skipped: {error.detail}", set()

        return await dead_letters.redrive_escalations(rt.broker, retry)
    try:
        return await dead_letters.redrive_queue(rt.broker, queue)
    except ValueError as error:
        raise HTTPException(404, str(error)) from error


async def _act(rt, request: Request, action) -> SagaState:
    try:
        async with UnitOfWork(rt.sessions, rt.name) as uow:
            state = await action(request.app.state.orchestrator, uow)
            await uow.commit()
    except LookupError as error:
        raise HTTPException(404, str(error)) from error
    except ValueError as error:
        raise HTTPException(409, str(error)) from error
    return state
