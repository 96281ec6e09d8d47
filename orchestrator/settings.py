"""Orchestrator settings (env prefix ``ORCHESTRATOR_``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, SecretStr, TypeAdapter, model_validator
from pydantic_settings import SettingsConfigDict

from messaging.settings import ServiceSettings, operator_token

from .engine import SagaDefinition, Step

_SECONDS = TypeAdapter(PositiveFloat)


class StepTimeouts(BaseModel):
    """Overrides of what the saga definitions declare, by step name: ``ORCHESTRATOR_TIMEOUTS__FULFILL_ORDER=3``
    gives the step ``fulfill_order`` (in whichever saga has it) a least time of 3 s.

    As declared, each saga has a budget of 30 s from its start. Each forward step is given at
    least its own 5 s, and more when the steps before it were quick: it may run until the
    budget's end minus 5 s for each step after it (15 s after the start for reserve_inventory,
    20 s for process_payment ...). Meanwhile its command is resent after 3 s of silence and once
    more 5 s later: a participant killed while handling it, and restarted within the budget,
    finds a resend waiting, while the copy it had taken stays invisible for its 10 s
    visibility timeout. A participant that is really down makes its step time out, and the
    saga compensates (or, after its pivot, escalates), still inside the budget. A compensation
    that is never acknowledged is resent after 5, 10, 20, 40 and 80 s, then escalated."""

    model_config = ConfigDict(extra="allow")
    resend_after: PositiveFloat | None = None
    saga_budget: PositiveFloat | None = None
    max_compensation_attempts: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _positive_seconds(self) -> StepTimeouts:
        self.steps()
        return self

    def steps(self) -> dict[str, float]:
        """Each step named in the settings and its least time in seconds."""
        return {name: _SECONDS.validate_python(value) for name, value in (self.model_extra or {}).items()}

    def apply(self, *definitions: SagaDefinition) -> tuple[SagaDefinition, ...]:
        """The definitions with these overrides; a step name no definition has is an error."""
        steps = self.steps()
        known = {step.name for definition in definitions for step in definition.steps}
        former = {name for definition in definitions for step in definition.steps for name in step.formerly}
        if unknown := sorted(set(steps) - known - former):
            raise ValueError(f"timeouts for unknown steps: {', '.join(unknown)}; steps are {', '.join(sorted(known))}")
        return tuple(self._apply(d, steps) for d in definitions)

    def _apply(self, definition: SagaDefinition, steps: dict[str, float]) -> SagaDefinition:
        resend = timedelta(seconds=self.resend_after) if self.resend_after else None
        return replace(
            definition,
            steps=tuple(
                replace(
                    step,
                    timeout=_least_time(step, steps),
                    resend_after=resend if resend and step.resend_after else step.resend_after,
                )
                for step in definition.steps
            ),
            # Every step that resends (by its own interval or the saga's) resends at the override.
            resend_after=resend if resend and definition.resend_after else definition.resend_after,
            budget=timedelta(seconds=self.saga_budget) if self.saga_budget else definition.budget,
            max_compensation_attempts=self.max_compensation_attempts or definition.max_compensation_attempts,
        )


def _least_time(step: Step, steps: dict[str, float]) -> timedelta | None:
    """The least time set for ``step`` by its name, or else by a former name (still accepted,
    so that renaming a step does not stop a deployment that sets it); None: the saga's."""
    for name in step.names:
        if name in steps:
            return timedelta(seconds=steps[name])
    return step.timeout


class ConsoleLinks(BaseModel):
    """Where the console links an order and each participant's record (``make up``'s ports by default)."""

    order: str = "http://127.0.0.1:8000"
    inventory: str = "http://127.0.0.1:8002"
    payment: str = "http://127.0.0.1:8003"
    fulfillment: str = "http://127.0.0.1:8004"
    notification: str = "http://127.0.0.1:8005"


class ConsoleSettings(BaseModel):
    """``ORCHESTRATOR_CONSOLE__STUCK_AFTER=600``, ``ORCHESTRATOR_CONSOLE__LINKS__PAYMENT=https://...``."""

    stuck_after: float = Field(300, gt=0, description="Seconds in running or compensating before a saga counts as stuck.")
    refresh_seconds: float = Field(5, gt=0, description="How often the overview refreshes itself.")
    session_seconds: float = Field(
        8 * 3600, gt=0, le=7 * 86400, description="How long a console sign-in lasts at most (sign-out ends it sooner)."
    )
    links: ConsoleLinks = ConsoleLinks()
    trace_url: str = Field(
        "",
        description=(
            "Where a saga's trace is seen, with {trace_id} or {xray_trace_id} in it (make up TRACING=1: the local "
            "viewer; infra/ with tracing: CloudWatch); empty: no link."
        ),
    )


class Settings(ServiceSettings):
    """``ORCHESTRATOR_TIMEOUTS__FULFILL_ORDER=3`` overrides one step's deadline."""

    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", env_nested_delimiter="__", extra="ignore")
    port: int = Field(8001, ge=1, le=65535)
    # A bulk action names up to its dry run's ids; the console's forms are small.
    max_body_bytes: int = Field(1024 * 1024, gt=0, le=16 * 1024 * 1024)
    timeouts: StepTimeouts = StepTimeouts()
    deadline_poll_interval: float = Field(0.5, gt=0)
    deadline_startup_grace: float = Field(
        3, ge=0, description="After a start, replies already waiting in the queue are consumed before deadlines fire."
    )
    console: ConsoleSettings = ConsoleSettings()
    start_versions: dict[str, int] = Field(
        default_factory=lambda: {"order": 1},
        description=(
            "The version of each definition new sagas start on (ORCHESTRATOR_START_VERSIONS__ORDER=2); the latest "
            "registered where none is named. The order saga starts on 1 until the fraud screen (v2's screen_order) "
            "runs at payment_svc everywhere."
        ),
    )
    run_versions: dict[str, list[int]] = Field(
        default_factory=dict,
        description=(
            "The versions of a definition this process runs (ORCHESTRATOR_RUN_VERSIONS__ORDER='[1]'); every version in "
            "the code where none is named. A version left out is left, message by message, for a process that runs it."
        ),
    )
    saga_retention_days: float = Field(
        90,
        gt=0,
        description=(
            "Days a finished saga (completed or compensated) is kept, with its history, after it finished; then the "
            "janitor deletes both and GET /sagas/{id} answers 410. Sagas in any other status are kept."
        ),
    )
    intervention_count_interval: float = Field(
        30, gt=0, description="Seconds between two counts of the sagas in needs_intervention (a CloudWatch gauge)."
    )
    legacy_operator_token: SecretStr | None = Field(
        None,
        validation_alias="ORCHESTRATOR_OPERATOR_TOKEN",
        description="The orchestrator's former name for SAGA_OPERATOR_TOKEN, still accepted.",
    )

    @model_validator(mode="after")
    def _one_operator_token(self) -> Settings:
        legacy = operator_token(self.legacy_operator_token)
        if legacy is not None:
            if self.operator_token is None:
                self.operator_token = legacy
            elif self.operator_token.get_secret_value() != legacy.get_secret_value():
                raise ValueError(
                    "SAGA_OPERATOR_TOKEN and ORCHESTRATOR_OPERATOR_TOKEN are both set and differ; set only SAGA_OPERATOR_TOKEN"
                )
        return self
