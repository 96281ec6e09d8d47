"""notification_svc settings (env prefix ``NOTIFICATION_``)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from messaging.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATION_", extra="ignore")
    port: int = Field(8005, ge=1, le=65535)
    sender_email: str = "orders@shop.example"
    email_poll_interval: float = Field(0.2, gt=0)
    retention_days: float = Field(
        30, gt=0, description="Days a notification sent (or given up on) is kept, its subject and body included."
    )
