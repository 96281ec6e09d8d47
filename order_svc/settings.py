"""order_svc settings (env prefix ``ORDER_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from messaging.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDER_", extra="ignore")
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(64 * 1024, gt=0)
    saga_start_bound: float = Field(
        60, gt=0, description="Seconds after which an order still pending is checked for a saga that never started."
    )
    stranded_check_interval: float = Field(15, gt=0)
    max_in_flight: int = Field(
        100,
        gt=0,
        description=(
            "Orders accepted and not yet finished, by every replica together, above which POST /orders "
            "answers 503 with Retry-After."
        ),
    )
