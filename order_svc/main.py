"""Entry point: ``python -m order_svc``."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from contracts.topology import ORDER_COMMANDS, Naming
from messaging import janitor
from messaging.service import ServiceDefinition, create_app, serve

from . import admission, api, customers, handlers, stranded, tables
from .erasure import FORGET_PERSONAL_DATA
from .settings import Settings


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    admitting = admission.Admission(
        settings.max_in_flight,
        horizon=settings.saga_start_bound,
        target=settings.admission_target_seconds,
        min_in_flight=settings.min_in_flight,
        memory=settings.capacity_memory_seconds,
        per_customer=settings.max_in_flight_per_customer,
    )
    definition = ServiceDefinition(
        name="order",
        package=__package__,
        metadata=tables.metadata,
        naming=Naming,
        queues=(ORDER_COMMANDS,),
        handlers=handlers.HANDLERS,
        routers=(api.router, api.guarded),
        workers=(stranded.worker(settings.saga_start_bound, settings.stranded_check_interval),),
        expiring=(
            janitor.Expiry(tables.idempotency_keys, "created_at", api.IDEMPOTENCY_TTL),
            janitor.Batched("orders_personal_data", FORGET_PERSONAL_DATA, timedelta(days=settings.personal_data_days)),
        ),
    )
    app = create_app(definition, settings)
    app.state.admission = admitting
    app.state.customer_tokens = (
        customers.CustomerTokens(settings.jwt_issuer, settings.jwt_audience, settings.jwt_jwks_url)
        if settings.jwt_issuer
        else None
    )
    return app


def main() -> None:
    settings = Settings()
    serve(build_app(settings), settings)
