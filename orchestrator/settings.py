"""Orchestrator settings (env prefix ``ORCHESTRATOR_``)."""
from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from messaging.settings import ServiceSettings


class StepTimeouts(BaseModel):
    """Seconds each step may take before the saga compensates, and how soon a command that got
    no reply is sent again.

    A forward step's command is resent after 1.5 s of silence, then 3 s after that, within the
    step's 7 s budget (sends at 0, 1.5 and 4.5 s): a participant killed while handling it, and
    restarted within a few seconds, finds a resend waiting, while the copy it had taken stays
    invisible for its 10 s visibility timeout. Four steps of 7 s keep a saga inside 30 s even
    when every step needs its resends; a participant that is really down still makes its step
    time out after 7 s, and the others are undone at once. Only a compensation that is never
    acknowledged takes longer: it is resent after 7, 14, 28, 56 and 112 s, then escalated."""

    create_order: float = Field(5, gt=0)
    reserve_inventory: float = Field(7, gt=0)
    process_payment: float = Field(7, gt=0)
    fulfill_order: float = Field(7, gt=0)
    send_confirmation: float = Field(7, gt=0)
    resend_after: float = Field(1.5, gt=0)
    max_compensation_attempts: int = Field(5, ge=1)


class Settings(ServiceSettings):
    """``ORCHESTRATOR_TIMEOUTS__FULFILL_ORDER=3`` overrides one step's deadline."""

    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", env_nested_delimiter="__", extra="ignore")
    port: int = Field(8001, ge=1, le=65535)
    timeouts: StepTimeouts = StepTimeouts()
    deadline_poll_interval: float = Field(0.5, gt=0)
    operator_token: str | None = Field(None, description="Bearer token for the operator endpoints; unset disables them.")
