"""order_svc settings (env prefix ``ORDER_``)."""

import urllib.parse

from pydantic import Field, model_validator
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
    min_in_flight: int = Field(
        100,
        gt=0,
        description=(
            "The adaptive bound never falls below this: what a deployment that has shown no capacity yet admits at once."
        ),
    )
    personal_data_days: float = Field(
        30,
        gt=0,
        description=(
            "Days an order's email and shipping address are kept once the order is final (confirmed or cancelled; "
            "returns and disputes need them a while); then they are erased and the order keeps its ids and amounts."
        ),
    )
    capacity_memory_seconds: float = Field(
        86_400,
        ge=0,
        description="How long the best finishing rate the deployment has shown keeps the bound up (0: not remembered).",
    )
    jwt_issuer: str = Field("", max_length=512, description="The customers' identity provider (its iss); empty: none.")
    jwt_audience: str = Field("", max_length=512, description="The aud its tokens for this API carry.")
    jwt_jwks_url: str = Field("", max_length=2048, description="Where its public keys are (https; http only on loopback).")

    @model_validator(mode="after")
    def _one_identity_provider(self) -> "Settings":
        given = [bool(self.jwt_issuer), bool(self.jwt_audience), bool(self.jwt_jwks_url)]
        if any(given) and not all(given):
            raise ValueError("ORDER_JWT_ISSUER, ORDER_JWT_AUDIENCE and ORDER_JWT_JWKS_URL are set together or not at all")
        if self.jwt_jwks_url:
            url = urllib.parse.urlsplit(self.jwt_jwks_url)
            loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
            if url.scheme != "https" and not (url.scheme == "http" and loopback):
                raise ValueError("ORDER_JWT_JWKS_URL must be https (http only on a loopback address)")
        return self

    max_in_flight_per_customer: int = Field(
        20,
        gt=0,
        description=(
            "At most this many orders of one customer accepted and not yet finished: above it POST /orders answers 429 "
            "with Retry-After, so that no one client can take the whole admission bound."
        ),
    )
