"""The email worker: hands queued emails to Amazon SES.

Same discipline as the outbox relay: rows are claimed with SKIP LOCKED (several workers
never send the same email), and marked sent only after SES accepted them. A crash between
the two resends that email once (at least once, as SES offers no idempotency key).
"""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aioboto3
import structlog
from sqlalchemy import select, update

from messaging.aws import BOTO_CONFIG, region
from messaging.service import Runtime

from .tables import notifications

log = structlog.get_logger("email")


def email_worker(sender: str, poll_interval: float):
    async def send_emails(rt: Runtime) -> None:
        async with aioboto3.Session(region_name=region()).client("ses", config=BOTO_CONFIG) as ses:
            while not rt.stop.is_set():
                try:
                    sent = await send_queued(rt, ses, sender)
                except Exception:  # SES or the database is briefly down: try again shortly
                    log.exception("email_pass_failed")
                    sent = 0
                if not sent:
                    await asyncio.sleep(poll_interval)

    return send_emails


async def send_queued(rt: Runtime, ses, sender: str, limit: int = 10) -> int:
    """Send up to ``limit`` queued emails; stop at the first SES error, keeping what was sent."""
    sent = 0
    async with rt.sessions() as session, session.begin():
        rows = (await session.execute(
            select(notifications).where(notifications.c.channel == "email", notifications.c.status == "queued")
            .order_by(notifications.c.created_at).limit(limit).with_for_update(skip_locked=True))).all()
        for row in rows:
            try:
                response = await ses.send_email(
                    Source=sender, Destination={"ToAddresses": [row.recipient]},
                    Message={"Subject": {"Data": row.subject}, "Body": {"Text": {"Data": row.body}}},
                )
            except Exception as error:  # noqa: BLE001 - the rest waits for the next pass
                log.warning("email_send_failed", order_id=str(row.order_id), saga_id=str(row.saga_id),
                            error=type(error).__name__)
                break
            await session.execute(update(notifications).where(notifications.c.notification_id == row.notification_id)
                                  .values(status="sent", sent_at=datetime.now(UTC), recipient=None,
                                          provider_message_id=response["MessageId"]))
            sent += 1
            log.info("email_sent", order_id=str(row.order_id), saga_id=str(row.saga_id))
    return sent
