"""Settings every service shares. Each service subclasses with its own env prefix."""

from __future__ import annotations

import os
import re
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import database
from .cloudwatch import Sink


class ServiceSettings(BaseSettings):
    """Fails fast: a missing database URL or a bad number stops the process at start."""

    # Settings hold secrets (the database URL, the operator token): errors must not echo them.
    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    database_url: str = Field(description="SQLAlchemy URL of this service's own database (postgresql+asyncpg://...)")
    database_iam_auth: bool = Field(
        False,
        validation_alias="DATABASE_IAM_AUTH",
        description="Sign in to RDS with an IAM token of the task role instead of a password (infra/ sets it).",
    )
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    max_body_bytes: int = Field(
        64 * 1024, gt=0, le=16 * 1024 * 1024, description="Request bodies over this many bytes are refused with 413, unread."
    )
    resource_prefix: str = Field("saga", validation_alias="SAGA_RESOURCE_PREFIX", pattern=r"^[a-z0-9-]{0,40}$")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    otel_traces_exporter: Literal["otlp", "console", "none"] = Field(
        "none",
        validation_alias="OTEL_TRACES_EXPORTER",
        description=(
            "OpenTelemetry traces: otlp (to OTEL_EXPORTER_OTLP_ENDPOINT), console (stdout) or none (nothing installed, "
            "nothing costs); the other OTEL_* variables are read by the SDK."
        ),
    )
    relay_poll_interval: float = Field(
        2.0,
        gt=0,
        validation_alias="RELAY_POLL_INTERVAL",
        description="Seconds between full passes, which publish rows no commit of this process announced (a dead replica's).",
    )
    consumer_wait_seconds: int = Field(5, ge=0, le=20, validation_alias="CONSUMER_WAIT_SECONDS")
    consumer_visibility_timeout: int = Field(10, ge=1, le=43200, validation_alias="CONSUMER_VISIBILITY_TIMEOUT")
    consumer_max_in_flight: int = Field(20, ge=10, le=1000, validation_alias="CONSUMER_MAX_IN_FLIGHT")
    consumer_receive_linger: float = Field(0.05, ge=0, le=1, validation_alias="CONSUMER_RECEIVE_LINGER")
    consumer_dead_letter_after: int = Field(
        5,
        ge=1,
        le=50,
        validation_alias="CONSUMER_DEAD_LETTER_AFTER",
        description=(
            "Failures of a message's own handler (the database being down does not count) after which the consumer "
            "moves it to the dead-letter queue with its reason and lets its FIFO group go on."
        ),
    )
    consumer_delete_linger: float = Field(0.5, ge=0, le=5, validation_alias="CONSUMER_DELETE_LINGER")
    relay_linger: float = Field(0.05, ge=0, le=1, validation_alias="RELAY_LINGER")
    shutdown_grace_seconds: float = Field(
        8,
        ge=0,
        validation_alias="SHUTDOWN_GRACE_SECONDS",
        description="On SIGTERM, how long handlers in flight and the relay's pass may take before being cancelled.",
    )
    # The pools' sizes bound the connections each process opens: on a shared server every
    # process of every service counts against its max_connections. infra/ derives them per
    # ECS task from the instance's limit (see infra/README.md, "Connection budget").
    db_pool_size: int = Field(
        10,
        ge=1,
        le=100,
        validation_alias="DB_POOL_SIZE",
        description="Connections the main pool (handlers, HTTP requests, workers) keeps open.",
    )
    db_max_overflow: int = Field(
        10,
        ge=0,
        le=100,
        validation_alias="DB_MAX_OVERFLOW",
        description="Connections the main pool may open beyond DB_POOL_SIZE under load, closed again when handed back.",
    )
    relay_pool_size: int = Field(
        4,
        ge=1,
        le=20,
        validation_alias="RELAY_POOL_SIZE",
        description="Connections of the relay's own pool (no overflow): destinations published to at once.",
    )
    outbox_retention_days: float = Field(7, gt=0, validation_alias="OUTBOX_RETENTION_DAYS")
    janitor_interval: float = Field(
        3600,
        gt=0,
        validation_alias="JANITOR_INTERVAL_SECONDS",
        description="Seconds between the janitor's passes (purges and erasures past their retention), the first at start.",
    )
    guard_retention_days: float = Field(
        90,
        ge=15,
        validation_alias="SAGA_GUARD_RETENTION_DAYS",
        description=(
            "Days the step guard keeps a saga step's record after its last change (at least 15, as the inbox): "
            "a command for the step older than this (an operator's retry of a saga that old) is not recognised."
        ),
    )
    # Every wait on the database has an end (see docs/design.md, "Timeouts").
    db_statement_timeout: float = Field(
        30,
        gt=0,
        le=3600,
        validation_alias="DB_STATEMENT_TIMEOUT",
        description="Seconds a statement may run before PostgreSQL cancels it (statement_timeout; migrations are exempt).",
    )
    db_lock_timeout: float = Field(
        5,
        gt=0,
        le=600,
        validation_alias="DB_LOCK_TIMEOUT",
        description=(
            "Seconds a statement may wait for a lock (lock_timeout): a stuck holder costs a request a 503 "
            "and a message a retry, not the pool."
        ),
    )
    db_idle_in_transaction_timeout: float = Field(
        60,
        gt=0,
        le=3600,
        validation_alias="DB_IDLE_IN_TRANSACTION_TIMEOUT",
        description=(
            "Seconds a session may sit idle inside a transaction before PostgreSQL ends it and its locks "
            "(idle_in_transaction_session_timeout): a frozen process's claims are freed."
        ),
    )
    db_command_timeout: float = Field(
        60,
        gt=0,
        le=3600,
        validation_alias="DB_COMMAND_TIMEOUT",
        description=(
            "Seconds the driver waits for any answer of the server (asyncpg's command_timeout): an unreachable "
            "server fails the statement instead of hanging it. Longer than DB_STATEMENT_TIMEOUT, so that the "
            "server's own cancellation comes first."
        ),
    )
    db_keepalive_seconds: int = Field(
        30,
        ge=1,
        le=3600,
        validation_alias="DB_KEEPALIVE_SECONDS",
        description=(
            "Idle seconds before the server probes a client's TCP connection (tcp_keepalives_idle; then every "
            "10 s, 3 times): the sessions, and locks, of a partitioned or dead client end within about a minute."
        ),
    )
    db_pool_timeout: float = Field(
        10,
        gt=0,
        le=300,
        validation_alias="DB_POOL_TIMEOUT",
        description="Seconds a request or handler waits for a pooled connection before it gets a 503 or a retry.",
    )
    metrics_sink: Sink = Field(
        "auto",
        validation_alias="METRICS_SINK",
        description="Where the CloudWatch metrics go: auto is emf on ECS (stdout), cloudwatch (PutMetricData) elsewhere.",
    )
    metrics_publish_interval: float = Field(60, gt=0, validation_alias="METRICS_PUBLISH_INTERVAL")
    chaos_copies: int = Field(
        0,
        ge=0,
        le=2,
        validation_alias="RELAY_CHAOS_COPIES",
        description="Chaos switch: up to this many extra deliveries of a queue message, delayed 0-3 s at random.",
    )
    chaos_copy_chance: float = Field(
        0.0,
        ge=0,
        le=1,
        validation_alias="RELAY_CHAOS_COPY_CHANCE",
        description="Chaos switch: the share of queue messages that get extra deliveries.",
    )
    duplicate_delivery: bool = Field(
        False,
        validation_alias="RELAY_DUPLICATE_DELIVERY",
        description="Chaos switch: publish every message twice, to prove the inboxes deduplicate.",
    )

    sender_principals: dict[str, str] = Field(
        default_factory=dict,
        validation_alias="SAGA_SENDER_PRINCIPALS",
        description=(
            "JSON object: each service's name -> the principal id SQS stamps its messages with (SenderId before ':', "
            "its task role's unique id on ECS). Set: a received message whose SenderId is not its claimed sender's "
            "is refused. Unset: only the claimed sender is checked (the emulators give every message one id)."
        ),
    )

    operator_token: SecretStr | None = Field(
        None,
        validation_alias="SAGA_OPERATOR_TOKEN",
        description=(
            "The bootstrap token: the admin named 'bootstrap' on every service's operator endpoints, for issuing "
            "operators' personal tokens (sagactl operators add) and for break-glass. Unset: personal tokens only."
        ),
    )
    operator_token_previous: SecretStr | None = Field(
        None,
        validation_alias="SAGA_OPERATOR_TOKEN_PREVIOUS",
        description="Also accepted while set, so that the bootstrap token can be rotated without downtime.",
    )
    identity_url: str | None = Field(
        None,
        validation_alias="SAGA_IDENTITY_URL",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description=(
            "The orchestrator's base URL, where this service asks whose a personal operator token is "
            "(GET /operator/whoami). Unset: only the bootstrap token is accepted here."
        ),
    )
    identity_cache_seconds: float = Field(
        15,
        ge=0,
        le=300,
        validation_alias="SAGA_IDENTITY_CACHE_SECONDS",
        description=(
            "How long an answer of the orchestrator's about a token is kept: a revoked token works here that long at most."
        ),
    )

    @field_validator("operator_token", "operator_token_previous", mode="before")
    @classmethod
    def _token(cls, value: Any) -> Any:
        return operator_token(value)

    def database_timeouts(self) -> database.Timeouts:
        return database.Timeouts(
            statement=self.db_statement_timeout,
            lock=self.db_lock_timeout,
            idle_in_transaction=self.db_idle_in_transaction_timeout,
            command=self.db_command_timeout,
            keepalive=self.db_keepalive_seconds,
            pool=self.db_pool_timeout,
        )

    @model_validator(mode="after")
    def _timeouts_nest(self) -> ServiceSettings:
        if self.db_command_timeout <= self.db_statement_timeout:
            raise ValueError(
                f"DB_COMMAND_TIMEOUT ({self.db_command_timeout:g} s) must be longer than DB_STATEMENT_TIMEOUT "
                f"({self.db_statement_timeout:g} s): the server cancels a slow statement, the driver only gives up on a lost one"
            )
        if self.db_lock_timeout > self.db_statement_timeout:
            raise ValueError(
                f"DB_LOCK_TIMEOUT ({self.db_lock_timeout:g} s) must not be longer than DB_STATEMENT_TIMEOUT "
                f"({self.db_statement_timeout:g} s), which would end the wait first"
            )
        return self

    def operator_tokens(self) -> list[str]:
        """The tokens accepted now: the current one and, during a rotation, the previous one."""
        return [t.get_secret_value() for t in (self.operator_token, self.operator_token_previous) if t is not None]

    @field_validator("sender_principals")
    @classmethod
    def _principals(cls, value: dict[str, str]) -> dict[str, str]:
        for service, principal in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", service):
                raise ValueError(f"{service!r} is not a service name")
            if not re.fullmatch(r"[A-Za-z0-9]{8,128}", principal):
                raise ValueError(f"the principal id of {service} must be 8 to 128 letters and digits (an AROA... role id)")
        return value

    @field_validator("database_url")
    @classmethod
    def _asyncpg(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a PostgreSQL URL")
        query = dict(parse_qsl(urlsplit(value).query))
        if query.get("ssl") in ("verify-ca", "verify-full"):
            # asyncpg verifies against PGSSLROOTCERT; without it every connection would fail later.
            bundle = os.environ.get("PGSSLROOTCERT")
            if not bundle or not os.path.isfile(bundle):
                raise ValueError(f"ssl={query['ssl']} needs PGSSLROOTCERT naming the CA bundle file (it is {bundle!r})")
        return value


def operator_token(value: str | SecretStr | None) -> SecretStr | None:
    """A valid operator token, None when unset or empty; raises ``ValueError`` otherwise."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value:
        return None
    # Sent as a header value: visible ASCII only, and long enough not to be guessed.
    if not (16 <= len(value) <= 512 and all("!" <= ch <= "~" for ch in value)):
        raise ValueError("an operator token is 16 to 512 visible ASCII characters")
    return SecretStr(value)
