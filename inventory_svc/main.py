"""Entry point: ``python -m inventory_svc``."""

from __future__ import annotations

from fastapi import FastAPI

from contracts.topology import INVENTORY_COMMANDS, Naming
from messaging.service import ServiceDefinition, create_app, serve

from . import api, handlers, tables
from .settings import Settings


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    definition = ServiceDefinition(
        name="inventory",
        package=__package__,
        metadata=tables.metadata,
        naming=Naming,
        queues=(INVENTORY_COMMANDS,),
        handlers=handlers.HANDLERS,
        routers=(api.router,),
    )
    return create_app(definition, settings)


def main() -> None:
    settings = Settings()
    serve(build_app(settings), settings)
