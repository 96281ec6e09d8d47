"""Entry point: ``python -m notification_svc``."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from contracts.topology import NOTIFICATION_COMMANDS, Naming
from messaging import janitor
from messaging.service import ServiceDefinition, create_app, serve

from . import api, handlers, tables
from .mailer import email_worker
from .settings import Settings

PURGE_NOTIFICATIONS = """
DELETE FROM notifications WHERE ctid IN (
    SELECT ctid FROM notifications
    WHERE status <> 'queued' AND created_at < now() - CAST(:keep AS interval) LIMIT :batch
)
"""
"""Notifications sent or given up on, past NOTIFICATION_RETENTION_DAYS: their subject and body
name the customer's order; the saga's history keeps that they were sent."""


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
        expiring=(janitor.Batched("notifications", PURGE_NOTIFICATIONS, timedelta(days=settings.retention_days)),),
    )
    return create_app(definition, settings)


def main() -> None:
    settings = Settings()
    serve(build_app(settings), settings)
