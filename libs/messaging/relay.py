"""The relay: publishes committed outbox rows to SQS and SNS."""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Collection
from typing import Any

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import metrics
from .aws import Broker, sqs_attributes
from .outbox import NOTIFY_CHANNEL

log = structlog.get_logger("relay")

BACKLOG_INTERVAL = 5.0  # seconds between refreshes of the backlog gauges
AWS_BATCH_LIMIT = 10  # SendMessageBatch and PublishBatch both take at most 10 entries.

# SKIP LOCKED is what lets several relays run side by side: a row claimed by one relay's
# open transaction is invisible to the others until that transaction ends, so no row is
# ever published by two relays at once. Ordering by attempts first sends rows that keep
# failing to the back, so they never hold up new ones.
_CLAIM = text(
    "SELECT id, destination, body, attributes FROM outbox WHERE published_at IS NULL "
    "ORDER BY attempts, id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
_MARK_PUBLISHED = text("UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY(:ids)")
_PURGE_PUBLISHED = text("DELETE FROM outbox WHERE id = ANY(:ids) AND message_type = ANY(:types)")
_MARK_FAILED = text("UPDATE outbox SET attempts = attempts + 1, last_error = :error WHERE id = ANY(:ids)")
_BACKLOG = text("SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at)) FROM outbox WHERE published_at IS NULL")


def listen_dsn(database_url: str) -> str:
    """The asyncpg DSN of a SQLAlchemy URL, for the LISTEN connection."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class Relay:
    """Publishes unpublished outbox rows and marks them published once the broker has them.

    Delivery is at least once: if the process dies after the broker accepted a batch but
    before the marking commits, the rows are published again by the next pass (the
    receivers' inboxes drop the copies). It is never at most once: a row is marked only
    after the broker acknowledged that very entry.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        broker: Broker,
        *,
        service: str,
        database_url: str | None = None,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        duplicate_delivery: bool = False,
        purge_after_publish: Collection[str] = (),
    ) -> None:
        """``purge_after_publish``: message types whose rows are deleted as soon as they are
        published, rather than kept for the retention period, because they carry secrets or
        personal data."""
        self._sessions = sessions
        self._broker = broker
        self._service = service
        self._database_url = database_url
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._duplicate_delivery = duplicate_delivery
        self._purge_types = sorted(purge_after_publish)
        self._wake = asyncio.Event()
        self._backlog_due = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; wake on NOTIFY, or poll every ``poll_interval``."""
        async with self._listening():
            while not stop.is_set():
                # Cleared before the pass, not after: a NOTIFY that arrives while the pass
                # runs must start the next pass at once rather than wait for the poll.
                self._wake.clear()
                try:
                    published = await self.publish_pending()
                    if time.monotonic() >= self._backlog_due:  # a gauge, not worth a query every pass
                        await self._record_backlog()
                        self._backlog_due = time.monotonic() + BACKLOG_INTERVAL
                except Exception:  # the database or the broker is down: keep going, retry on the next pass
                    log.exception("relay_pass_failed", service=self._service)
                    published = 0
                if published < self._batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    async def publish_pending(self) -> int:
        """One pass: claim a batch, publish it, mark what the broker accepted. Returns that count."""
        async with self._sessions() as session, session.begin():
            rows = (await session.execute(_CLAIM, {"limit": self._batch_size})).all()
            if not rows:
                return 0
            by_destination: dict[str, list[Any]] = defaultdict(list)
            for row in rows:
                by_destination[row.destination].append(row)
            published: list[int] = []
            for destination, destination_rows in by_destination.items():
                for start in range(0, len(destination_rows), AWS_BATCH_LIMIT):
                    chunk = destination_rows[start:start + AWS_BATCH_LIMIT]
                    accepted, failed = await self._publish(destination, chunk)
                    published += accepted
                    if failed:
                        error = "; ".join(set(failed.values()))[:2000]
                        await session.execute(_MARK_FAILED, {"ids": list(failed), "error": error})
            if published:
                if self._purge_types:  # in the marking's transaction: a crash before it commits republishes them
                    await session.execute(_PURGE_PUBLISHED, {"ids": published, "types": self._purge_types})
                await session.execute(_MARK_PUBLISHED, {"ids": published})
        metrics.OUTBOX_PUBLISHED.labels(self._service).inc(len(published))
        return len(published)

    async def _publish(self, destination: str, rows: list[Any]) -> tuple[list[int], dict[int, str]]:
        kind, _, name = destination.partition(":")
        try:
            if kind == "queue":
                call = self._broker.sqs.send_message_batch
                kwargs = {"QueueUrl": await self._broker.queue_url(name), "Entries": [
                    {"Id": str(r.id), "MessageBody": r.body, "MessageAttributes": sqs_attributes(r.attributes)}
                    for r in rows
                ]}
            elif kind == "topic":
                call = self._broker.sns.publish_batch
                kwargs = {"TopicArn": self._broker.topic_arn(name), "PublishBatchRequestEntries": [
                    {"Id": str(r.id), "Message": r.body, "MessageAttributes": sqs_attributes(r.attributes)}
                    for r in rows
                ]}
            else:
                return [], {r.id: f"unknown destination kind {kind!r}" for r in rows}
            response = await call(**kwargs)
            if self._duplicate_delivery:
                await call(**kwargs)
        except Exception as error:  # noqa: BLE001 - any broker error leaves the rows for the next pass
            log.warning("relay_publish_failed", service=self._service, destination=destination, error=str(error))
            return [], {r.id: str(error) for r in rows}
        accepted = [int(entry["Id"]) for entry in response.get("Successful", [])]
        failed = {int(entry["Id"]): entry.get("Message", entry.get("Code", "failed")) for entry in response.get("Failed", [])}
        if failed:
            log.warning("relay_entries_rejected", service=self._service, destination=destination, count=len(failed))
        return accepted, failed

    async def _record_backlog(self) -> None:
        async with self._sessions() as session:
            count, oldest = (await session.execute(_BACKLOG)).one()
        metrics.outbox_backlog(self._service, count, float(oldest or 0))

    @contextlib.asynccontextmanager
    async def _listening(self):
        if not self._database_url:
            yield
            return
        connection = None
        try:
            connection = await asyncpg.connect(listen_dsn(self._database_url))
            await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
        except Exception:  # noqa: BLE001 - polling still works without LISTEN
            log.warning("relay_listen_unavailable", service=self._service, exc_info=True)
        try:
            yield
        finally:
            if connection is not None:
                await connection.close()
