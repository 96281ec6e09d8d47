"""order_svc settings (env prefix ``ORDER_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from messaging.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDER_", extra="ignore")
    port: int = Field(8000, ge=1, le=65535)
    saga_start_bound: float = Field(
        60, gt=0, description="Seconds after which an order still pending is checked for a saga that never started."
    )
    stranded_check_interval: float = Field(15, gt=0)
    max_in_flight: int = Field(
        500,
        gt=0,
        description=(
            "At most this many orders accepted and not yet finished, by every replica together: above the bound "
            "(this, or less as admission_target_seconds adapts it) POST /orders answers 503 with Retry-After."
        ),
    )
    admission_target_seconds: float = Field(
        5,
        ge=0,
        le=30,
        description=(
            "The bound is the orders finished per second times this (an admitted order waits about this long), "
            "between min_in_flight and max_in_flight; 0: max_in_flight alone."
        ),
    )
    min_in_flight: int = Field(20, gt=0, description="The adaptive bound never falls below this.")
    max_in_flight_per_customer: int = Field(
        20,
        gt=0,
        description=(
            "At most this many orders of one customer accepted and not yet finished: above it POST /orders answers 429 "
            "with Retry-After, so that no one client can take the whole admission bound."
        ),
    )
