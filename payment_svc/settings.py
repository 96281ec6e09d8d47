"""payment_svc settings (env prefix ``PAYMENT_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from messaging.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENT_", extra="ignore")
    port: int = Field(8003, ge=1, le=65535)
