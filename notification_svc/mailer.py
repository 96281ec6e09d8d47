"""The email worker: hands queued emails to Amazon SES.

Same discipline as the outbox relay: rows are claimed with SKIP LOCKED (several workers
never send the same email), and marked sent only after SES accepted them. A crash between
the two resends that email once (at least once, as SES offers no idempotency key).
An email SES refuses is retried on its own schedule (exponential backoff with jitter) and,
after ``MAX_EMAIL_ATTEMPTS``, marked ``failed`` and counted in ``emails_failed_total``;
it never holds up the emails behind it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from botocore.config import Config
from prometheus_client import Counter
from sqlalchemy import or_, select, update

from messaging.aws import session
from messaging.consumer import retry_delay
from messaging.service import Runtime

from .tables import notifications

log = structlog.get_logger("email")
MAX_EMAIL_ATTEMPTS = 8
# Short: the claimed rows stay locked while SES answers, and a WithdrawConfirmation for one
# of them waits on that lock. A slow SES is retried by this worker's own backoff instead.
SES_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3, read_timeout=10)
IDLE_POLL_CAP = 2.0  # seconds between looks for queued emails once there has been none for a while
EMAILS_FAILED = Counter("emails_failed_total", "Emails SES refused MAX_EMAIL_ATTEMPTS times")


def email_worker(sender: str, poll_interval: float):
    async def send_emails(rt: Runtime) -> None:
        async with session().client("ses", config=SES_CONFIG) as ses:
            idle = poll_interval
            while not rt.stop.is_set():
                try:
                    sent = await send_queued(rt, ses, sender)
                except Exception:  # SES or the database is briefly down: try again shortly
                    log.exception("email_pass_failed")
                    sent = 0
                if sent:
                    idle = poll_interval
                else:
                    # The saga does not wait for the email (its reply left with the queued
                    # row), so an idle worker may look less often: 0.2 s doubling to 2 s.
                    await asyncio.sleep(idle)
                    idle = min(idle * 2, IDLE_POLL_CAP)

    return send_emails


async def send_queued(rt: Runtime, ses, sender: str, limit: int = 10) -> int:
    """Send up to ``limit`` due emails; returns how many SES accepted."""
    sent = 0
    now = datetime.now(UTC)
    due = or_(notifications.c.next_attempt_at.is_(None), notifications.c.next_attempt_at <= now)
    async with rt.sessions() as session, session.begin():
        rows = (
            await session.execute(
                select(notifications)
                .where(notifications.c.channel == "email", notifications.c.status == "queued", due)
                .order_by(notifications.c.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            try:
                response = await ses.send_email(
                    Source=sender,
                    Destination={"ToAddresses": [row.recipient]},
                    Message={"Subject": {"Data": row.subject}, "Body": {"Text": {"Data": row.body}}},
                )
            except Exception as error:  # noqa: BLE001 - this email waits; the others go on
                await session.execute(
                    update(notifications)
                    .where(notifications.c.notification_id == row.notification_id)
                    .values(**_failure(row, error, now))
                )
                continue
            await session.execute(
                update(notifications)
                .where(notifications.c.notification_id == row.notification_id)
                .values(status="sent", sent_at=datetime.now(UTC), recipient=None, provider_message_id=response["MessageId"])
            )
            sent += 1
            log.info("email_sent", order_id=str(row.order_id), saga_id=str(row.saga_id))
    return sent


def _failure(row, error: Exception, now: datetime) -> dict:
    attempts = row.attempts + 1
    # The error's type and code only: SES messages can quote the address.
    reason = type(error).__name__ + (f": {error.response['Error'].get('Code')}" if hasattr(error, "response") else "")
    context = {"order_id": str(row.order_id), "saga_id": str(row.saga_id), "attempts": attempts, "error": reason}
    if attempts >= MAX_EMAIL_ATTEMPTS:
        log.error("email_failed", **context)
        EMAILS_FAILED.inc()
        return {"status": "failed", "attempts": attempts, "last_error": reason, "recipient": None}
    delay = retry_delay(attempts, base=2.0, cap=600.0)
    log.warning("email_send_failed", retry_in=delay, **context)
    return {"attempts": attempts, "last_error": reason, "next_attempt_at": now + timedelta(seconds=delay)}
