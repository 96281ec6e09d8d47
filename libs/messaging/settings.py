"""Settings every service shares. Each service subclasses with its own env prefix."""
from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Fails fast: a missing database URL or a bad number stops the process at start."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(description="SQLAlchemy URL of this service's own database (postgresql+asyncpg://...)")
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    resource_prefix: str = Field("saga", validation_alias="SAGA_RESOURCE_PREFIX", pattern=r"^[a-z0-9-]{0,40}$")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    relay_poll_interval: float = Field(1.0, gt=0, validation_alias="RELAY_POLL_INTERVAL")
    consumer_wait_seconds: int = Field(5, ge=0, le=20, validation_alias="CONSUMER_WAIT_SECONDS")
    consumer_visibility_timeout: int = Field(10, ge=1, le=43200, validation_alias="CONSUMER_VISIBILITY_TIMEOUT")
    shutdown_grace_seconds: float = Field(
        8, ge=0, validation_alias="SHUTDOWN_GRACE_SECONDS",
        description="On SIGTERM, how long handlers in flight and the relay's pass may take before being cancelled.")
    outbox_retention_days: float = Field(7, gt=0, validation_alias="OUTBOX_RETENTION_DAYS")
    chaos_copies: int = Field(
        0, ge=0, le=2, validation_alias="RELAY_CHAOS_COPIES",
        description="Chaos switch: up to this many extra deliveries of a queue message, delayed 0-3 s at random.",
    )
    chaos_copy_chance: float = Field(0.0, ge=0, le=1, validation_alias="RELAY_CHAOS_COPY_CHANCE",
                                     description="Chaos switch: the share of queue messages that get extra deliveries.")
    duplicate_delivery: bool = Field(
        False, validation_alias="RELAY_DUPLICATE_DELIVERY",
        description="Chaos switch: publish every message twice, to prove the inboxes deduplicate.",
    )

    @field_validator("database_url")
    @classmethod
    def _asyncpg(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a PostgreSQL URL")
        return value
