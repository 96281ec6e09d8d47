"""fulfillment_svc settings (env prefix ``FULFILLMENT_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from messaging.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FULFILLMENT_", extra="ignore")
    port: int = Field(8004, ge=1, le=65535)
    delivery_days: int = Field(3, ge=0, le=60)
