"""Orchestrator settings (env prefix ``ORCHESTRATOR_``)."""
from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from messaging.settings import ServiceSettings, operator_token


class StepTimeouts(BaseModel):
    """Seconds each step may take before the saga compensates. With the defaults an order
    settles well inside 30 seconds even when a participant is down (its step times out after
    5 s and the other steps are undone at once); only a compensation that is never
    acknowledged takes longer: it is resent after 5, 10, 20, 40 and 80 s, then escalated."""

    create_order: float = Field(5, gt=0)
    reserve_inventory: float = Field(5, gt=0)
    process_payment: float = Field(5, gt=0)
    fulfill_order: float = Field(5, gt=0)
    send_confirmation: float = Field(5, gt=0)
    max_compensation_attempts: int = Field(5, ge=1)


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
    links: ConsoleLinks = ConsoleLinks()


class Settings(ServiceSettings):
    """``ORCHESTRATOR_TIMEOUTS__FULFILL_ORDER=3`` overrides one step's deadline."""

    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", env_nested_delimiter="__", extra="ignore")
    port: int = Field(8001, ge=1, le=65535)
    timeouts: StepTimeouts = StepTimeouts()
    deadline_poll_interval: float = Field(0.5, gt=0)
    deadline_startup_grace: float = Field(
        3, ge=0, description="After a start, replies already waiting in the queue are consumed before deadlines fire.")
    console: ConsoleSettings = ConsoleSettings()
    intervention_count_interval: float = Field(
        30, gt=0, description="Seconds between two counts of the sagas in needs_intervention (a CloudWatch gauge).")
    legacy_operator_token: SecretStr | None = Field(
        None, validation_alias="ORCHESTRATOR_OPERATOR_TOKEN",
        description="The orchestrator's former name for SAGA_OPERATOR_TOKEN, still accepted.")

    @model_validator(mode="after")
    def _one_operator_token(self) -> Settings:
        legacy = operator_token(self.legacy_operator_token)
        if legacy is not None:
            if self.operator_token is None:
                self.operator_token = legacy
            elif self.operator_token.get_secret_value() != legacy.get_secret_value():
                raise ValueError("SAGA_OPERATOR_TOKEN and ORCHESTRATOR_OPERATOR_TOKEN are both set and differ; "
                                 "set only SAGA_OPERATOR_TOKEN")
        return self
