"""Orchestrator settings (env prefix ``ORCHESTRATOR_``)."""
from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from messaging.settings import ServiceSettings


class StepTimeouts(BaseModel):
    """How long each step waits for its reply, and how soon a command that got none is resent.

    The saga has a budget of 30 s from its start. Each forward step is given at least its own
    5 s, and more when the steps before it were quick: it may run until the budget's end
    minus 5 s for each step after it (15 s after the start for reserve_inventory, 20 s for
    process_payment ...). Meanwhile its command is resent after 3 s of silence and once more
    5 s later: a participant killed while handling it, and restarted within the budget, finds a
    resend waiting, while the copy it had taken stays invisible for its 10 s
    visibility timeout. A participant that is really down makes its step time out, and the
    saga compensates, still inside the budget. A compensation that is never acknowledged is
    resent after 5, 10, 20, 40 and 80 s, then escalated."""

    create_order: float = Field(5, gt=0)
    reserve_inventory: float = Field(5, gt=0)
    process_payment: float = Field(5, gt=0)
    fulfill_order: float = Field(5, gt=0)
    send_confirmation: float = Field(5, gt=0)
    resend_after: float = Field(3, gt=0)
    saga_budget: float = Field(30, gt=0)
    max_compensation_attempts: int = Field(5, ge=1)


class Settings(ServiceSettings):
    """``ORCHESTRATOR_TIMEOUTS__FULFILL_ORDER=3`` overrides one step's deadline."""

    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", env_nested_delimiter="__", extra="ignore")
    port: int = Field(8001, ge=1, le=65535)
    timeouts: StepTimeouts = StepTimeouts()
    deadline_poll_interval: float = Field(0.5, gt=0)
    operator_token: str | None = Field(None, description="Bearer token for the operator endpoints; unset disables them.")
