"""Entry point: ``python -m notification_svc``."""

from __future__ import annotations

from fastapi import FastAPI

from contracts.topology import NOTIFICATION_COMMANDS, Naming
from messaging.service import ServiceDefinition, create_app, serve

from . import api, handlers, tables
from .mailer import email_worker
from .settings import Settings


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    definition = ServiceDefinition(
        name="notification",
        package=__package__,
        metadata=tables.metadata,
        naming=Naming,
        queues=(NOTIFICATION_COMMANDS,),
        handlers=handlers.HANDLERS,
        routers=(api.router,),
        workers=(email_worker(settings.sender_email, settings.email_poll_interval),),
    )
    return create_app(definition, settings)


def main() -> None:
    settings = Settings()
    serve(build_app(settings), settings)
