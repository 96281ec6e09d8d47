"""A saga's state: its status, its data and each step's, as the saga row stores them, and the
events its history records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from .definition import Data


class SagaStatus(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    NEEDS_INTERVENTION = "needs_intervention"


FINAL_STATUSES = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.NEEDS_INTERVENTION})


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ESCALATED = "escalated"
    """After the pivot: refused, or silent through its budget; handed to a person."""
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


class HistoryEvent(StrEnum):
    """What a saga's history records. The values are stored in ``saga_history.event`` and read
    by the console and the chaos harness: never change one."""

    SAGA_STARTED = "saga_started"
    SAGA_START_FAILED = "saga_start_failed"
    SAGA_COMPLETED = "saga_completed"
    SAGA_COMPENSATED = "saga_compensated"
    SAGA_NEEDS_INTERVENTION = "saga_needs_intervention"
    STEP_STARTED = "step_started"
    STEP_RESENT = "step_resent"
    STEP_RESEND_DEFERRED = "step_resend_deferred"
    """A resend was due, but the participant's queue still held messages it had not taken:
    the command is queued behind them, not lost, and a copy would only wait behind it."""
    STEP_SUCCEEDED = "step_succeeded"
    STEP_FAILED = "step_failed"
    STEP_TIMED_OUT = "step_timed_out"
    STEP_ESCALATED = "step_escalated"
    STEP_COMPENSATED = "step_compensated"
    COMPENSATION_STARTED = "compensation_started"
    COMPENSATION_SENT = "compensation_sent"
    COMPENSATION_TIMED_OUT = "compensation_timed_out"
    COMPENSATION_FAILED = "compensation_failed"
    OPERATOR_RETRY_STEP = "operator_retry_step"
    OPERATOR_RETRY_COMPENSATION = "operator_retry_compensation"
    OPERATOR_RESOLVED = "operator_resolved"
    OPERATOR_REDRIVE = "operator_redrive"
    """Not a transition: a person sent one of the saga's dead-lettered messages back."""
    SETTLEMENT_SENT = "settlement_sent"
    SETTLEMENT_ACKNOWLEDGED = "settlement_acknowledged"
    COMPENSATION_RAN_BEFORE_SETTLEMENT = "compensation_ran_before_settlement"
    SAGA_HELD = "saga_held"
    """Started while its definition was paused: held at its start, its first command not sent."""
    SAGA_PAUSED = "saga_paused"
    SAGA_RESUMED = "saga_resumed"
    AWAITING_OPERATOR = "awaiting_operator"
    """A late answer settled what a person was asked to settle: recorded, but the saga stays in
    needs_intervention until their resolve or retry."""
    REPLY_IGNORED = "reply_ignored"
    """A reply no step expects in its status (a duplicate, a late one): nothing changed."""
    REPLY_REFUSED = "reply_refused"
    """A reply that answers no command this saga sent, or comes from another participant than
    the one asked: never taken, whatever it says (a forgery, or a reply of another saga)."""

    @classmethod
    def reached(cls, status: SagaStatus) -> HistoryEvent:
        """The event of a saga reaching a final ``status``."""
        return cls(f"saga_{status}")


@dataclass(frozen=True)
class HistoryEntry:
    event: HistoryEvent
    step: str | None = None
    detail: str | None = None


@dataclass
class StepState:
    name: str
    """The step's name when the saga started (a former name, after a rename)."""
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    """Attempts of the action: a saga runs each step once, so 1 once started. Resends share it."""
    sends: int = 0
    """Copies of the action's command sent in this attempt (the first plus resends)."""
    compensation_attempts: int = 0
    """Sends of the compensation since it was last started; paces its backoff and escalation."""
    compensation_round: int = 0
    """Attempt of the compensation: 1 when first started, +1 per operator retry. Resends share it."""
    escalation_ids: list[str] = field(default_factory=list)
    """Message ids of the escalations raised for this step, so the operator's tools find them
    by id rather than by comparing clocks."""
    compensation_command_id: str | None = None
    """Message id of the latest compensation sent, to tell its refusal from a stale one."""
    command_ids: list[str] = field(default_factory=list)
    """Message ids of every send of the action's current attempt (the first and each resend):
    a reply to the action counts only if it names one of them as its causation."""
    compensation_ids: list[str] = field(default_factory=list)
    """Message ids of every compensation sent for the step, in any round: likewise for the
    compensation's replies."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline: datetime | None = None
    error: str | None = None


@dataclass
class SagaState:
    saga_id: uuid.UUID
    definition: str
    subject: str
    status: SagaStatus
    data: Data
    steps: list[StepState]
    created_at: datetime
    updated_at: datetime
    failed_step: str | None = None
    failure_reason: str | None = None
    version: int = 1
    """The version of its definition the saga started on, and runs on to its end."""
    paused_at: datetime | None = None
    """Since when the saga is paused (None: it is not): it sends no command, its deadlines wait."""
    pause_kind: str | None = None
    """``definition`` (held at its start while its definition was paused) or ``saga`` (paused on its own)."""
    paused_seconds: float = 0.0
    """How long it has been paused in all: its budget is that much longer."""

    def step(self, name: str) -> StepState:
        return next(s for s in self.steps if s.name == name)

    @property
    def next_deadline(self) -> datetime | None:
        deadlines = [s.deadline for s in self.steps if s.deadline is not None]
        return min(deadlines) if deadlines else None

    def copy(self) -> SagaState:
        """A copy a transition may change without touching this one."""
        return replace(
            self,
            data=dict(self.data),
            steps=[
                replace(
                    s,
                    escalation_ids=list(s.escalation_ids),
                    command_ids=list(s.command_ids),
                    compensation_ids=list(s.compensation_ids),
                )
                for s in self.steps
            ],
        )
