"""inventory_svc settings (env prefix ``INVENTORY_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from messaging.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INVENTORY_", extra="ignore")
    port: int = Field(8002, ge=1, le=65535)
