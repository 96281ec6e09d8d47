"""The relay: publishes committed outbox rows to SQS and SNS."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import metrics, outbox, tracing
from .aws import Broker, sqs_attributes
from .crash import crash_point

log = structlog.get_logger("relay")

BACKLOG_INTERVAL = 15.0  # seconds between refreshes of the backlog gauges (published once a minute)
AWS_BATCH_LIMIT = 10  # SendMessageBatch and PublishBatch both take at most 10 entries.
PUBLISH_TIMEOUT = 5.0
"""Seconds one batch may take to publish, retries included, before it counts as failed."""
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0
"""A destination that failed is left alone for 0.5 s, doubling up to 30 s, while the others go on."""
STUCK_AFTER = 60.0  # seconds after which a destination still publishing is reported

# SKIP LOCKED is what lets several relays run side by side: a row claimed by one relay's
# open transaction is invisible to the others until that transaction ends, so no row is
# ever published by two relays at once. Ordering by attempts first sends rows that keep
# failing to the back, so they never hold up new ones.
_CLAIM = text(
    "SELECT id, message_id, saga_id, destination, message_type, body, attributes FROM outbox "
    "WHERE published_at IS NULL AND destination = :destination ORDER BY attempts, id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
_DESTINATIONS = text("SELECT DISTINCT destination FROM outbox WHERE published_at IS NULL")
_MARK_PUBLISHED = text("UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY(:ids)")
_PURGE_PUBLISHED = text("DELETE FROM outbox WHERE id = ANY(:ids)")
_MARK_FAILED = text("UPDATE outbox SET attempts = attempts + 1, last_error = :error WHERE id = ANY(:ids)")
_BACKLOG = text("SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at)) FROM outbox WHERE published_at IS NULL")


@dataclass
class _Backoff:
    failures: int = 0
    until: float = 0.0


class Relay:
    """Publishes unpublished outbox rows and marks them published once the broker has them.

    Delivery is at least once: if the process dies after the broker accepted a batch but
    before the marking commits, the rows are published again by the next pass (the
    receivers' inboxes drop the copies). It is never at most once: a row is marked only
    after the broker acknowledged that very entry.

    Each destination is published on its own, in its own transaction, with a short timeout
    and its own backoff: a topic that answers slowly, or not at all, holds up only its own
    rows, never a reply on its way to a queue.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        broker: Broker,
        *,
        service: str,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        duplicate_delivery: bool = False,
        purge_after_publish: Collection[str] = (),
        publish_timeout: float = PUBLISH_TIMEOUT,
        chaos_copies: int = 0,
        chaos_copy_chance: float = 1.0,
        linger: float = 0.05,
    ) -> None:
        """``purge_after_publish``: message types whose rows are deleted as soon as they are
        published, rather than kept for the retention period, because they carry secrets or
        personal data."""
        self._sessions = sessions
        self._broker = broker
        self._service = service
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._duplicate_delivery = duplicate_delivery
        self._purge_types = frozenset(purge_after_publish)
        self._publish_timeout = publish_timeout
        self._chaos_copies = chaos_copies
        self._chaos_copy_chance = chaos_copy_chance
        self._linger = linger
        self._last_batch: dict[str, int] = {}
        """How many rows the last batch of each destination held: two or more means traffic."""
        self._wake = asyncio.Event()
        self._notified: set[str] = set()
        """Destinations that commits in this process staged rows for since the last pass."""
        self._next_full_pass = 0.0
        self._backlog_due = 0.0
        self._backoff: dict[str, _Backoff] = defaultdict(_Backoff)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._since: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; wake on each commit in this process that staged
        rows (:func:`outbox.on_commit`), or poll every ``poll_interval``.

        On ``stop`` the destinations being published finish their batch before it returns.
        """
        engine: AsyncEngine = self._sessions.kw["bind"]
        forget = outbox.on_commit(engine.url, self._on_commit)

        async def wake_on_stop() -> None:
            await stop.wait()
            self._wake.set()

        stopping = asyncio.create_task(wake_on_stop())
        try:
            while not stop.is_set():
                # Cleared before the pass, not after: a commit announced while the pass runs
                # must start the next pass at once rather than wait for the poll.
                self._wake.clear()
                try:
                    self._report_stuck()
                    for destination in await self._pass_destinations():
                        if destination not in self._running:
                            task = asyncio.create_task(self._drain(destination))
                            task.add_done_callback(lambda _: self._wake.set())
                            self._running[destination] = task
                            self._since[destination] = time.monotonic()
                    if time.monotonic() >= self._backlog_due:  # a gauge, not worth a query every pass
                        await self._record_backlog()
                        self._backlog_due = time.monotonic() + BACKLOG_INTERVAL
                except Exception:  # the database is down: keep going, retry on the next pass
                    log.exception("relay_pass_failed", service=self._service)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._until_next_pass())
        finally:
            forget()
            stopping.cancel()
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)

    def _report_stuck(self) -> None:
        for destination, task in self._running.items():
            if time.monotonic() - self._since.get(destination, time.monotonic()) > STUCK_AFTER:
                frames = [f"{f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno}" for f in task.get_stack(limit=8)]
                log.warning("relay_destination_stuck", service=self._service, destination=destination, at=frames)

    async def publish_pending(self) -> int:
        """One pass over every destination that is not backing off, each in its own
        transaction, side by side. Returns how many rows the broker accepted."""
        destinations = self._ready(await self._waiting_destinations())
        counts = await asyncio.gather(*(self._publish_batch(d) for d in destinations))
        return sum(counts)

    async def _pass_destinations(self) -> list[str]:
        """What this pass publishes. A commit announces the destinations it staged rows for,
        so a pass woken by one asks the database nothing; every ``poll_interval`` (and at
        start) a full pass asks which destinations have rows waiting, for rows no commit of
        this process announced (left by a process that died, or committed by another) and
        for destinations that were backing off."""
        now = time.monotonic()
        if now >= self._next_full_pass:
            self._next_full_pass = now + self._poll_interval
            self._notified.update(await self._waiting_destinations())
        due = self._ready(self._notified)
        # Kept for a later pass: those still publishing, and those backing off (woken when it ends).
        self._notified.difference_update(due)
        return due

    def _ready(self, destinations: Collection[str]) -> list[str]:
        """Those of ``destinations`` neither publishing now nor backing off."""
        now = time.monotonic()
        return [d for d in destinations if d not in self._running and self._backoff[d].until <= now]

    def _until_next_pass(self) -> float:
        """Seconds to sleep unless woken: until the next full pass, or the end of the first
        backoff of a destination with rows waiting, whichever comes first."""
        now = time.monotonic()
        ends = [self._backoff[d].until for d in self._notified if d not in self._running]
        return max(0.0, min([self._next_full_pass, *ends]) - now)

    def _on_commit(self, destinations: Collection[str]) -> None:
        self._notified.update(destinations)
        self._wake.set()

    async def _waiting_destinations(self) -> list[str]:
        """Every destination with unpublished rows."""
        async with self._sessions() as session:
            return list((await session.execute(_DESTINATIONS)).scalars().all())

    async def _drain(self, destination: str) -> None:
        """Publish one destination's rows until none are left or a batch fails.

        Under traffic (the destination's last batch held two rows or more) it first waits
        ``linger``, so that the rows committed meanwhile go in the same request; a row on
        its own, the usual case at light load, goes at once."""
        try:
            if self._last_batch.get(destination, 0) >= 2:
                await asyncio.sleep(self._linger)
            try:
                await self._publish_all(destination)
            except DBAPIError as error:
                if not error.connection_invalidated:
                    raise
                # The server dropped the connection (a restart, a failover): the pool has been
                # emptied, so one more try on a fresh connection, rather than wait for the poll.
                await self._publish_all(destination)
        except Exception:  # noqa: BLE001 - the database is down: the next pass retries
            log.exception("relay_pass_failed", service=self._service, destination=destination)
        finally:
            self._running.pop(destination, None)

    async def _publish_all(self, destination: str) -> None:
        while await self._publish_batch(destination) >= self._batch_size:
            pass

    async def _publish_batch(self, destination: str) -> int:
        """Claim up to ``batch_size`` rows of ``destination``, publish them, mark what the
        broker accepted; one transaction. Returns that count."""
        async with self._sessions() as session:  # an empty claim ends in a rollback, not a commit
            rows = (await session.execute(_CLAIM, {"destination": destination, "limit": self._batch_size})).all()
            self._last_batch[destination] = len(rows)
            if not rows:
                return 0
            crash_point("relay_after_claim")
            published: list[int] = []
            for start in range(0, len(rows), AWS_BATCH_LIMIT):
                accepted, failed = await self._publish(destination, rows[start : start + AWS_BATCH_LIMIT])
                published += accepted
                if failed:
                    error = "; ".join(set(failed.values()))[:2000]
                    await session.execute(_MARK_FAILED, {"ids": list(failed), "error": error})
                    self._failed(destination)
                    self._notified.add(destination)  # retried when its backoff ends
                    break  # the rest waits for the destination's backoff
            else:
                self._backoff.pop(destination, None)
            crash_point("relay_after_publish")
            if published:
                # Purged in the marking's transaction: a crash before it commits republishes them.
                taken = set(published)
                purged = [r.id for r in rows if r.id in taken and r.message_type in self._purge_types]
                if purged:
                    await session.execute(_PURGE_PUBLISHED, {"ids": purged})
                if len(purged) < len(published):
                    await session.execute(_MARK_PUBLISHED, {"ids": published})
            await session.commit()
        metrics.OUTBOX_PUBLISHED.labels(self._service).inc(len(published))
        return len(published)

    def _failed(self, destination: str) -> None:
        backoff = self._backoff[destination]
        backoff.failures += 1
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (backoff.failures - 1))
        backoff.until = time.monotonic() + random.uniform(delay / 2, delay)

    async def _publish(self, destination: str, rows: Sequence[Any]) -> tuple[list[int], dict[int, str]]:
        kind, _, name = destination.partition(":")
        try:
            fifo = kind == "queue" and self._broker.naming.is_fifo(name)
            if kind == "queue":
                call = self._broker.sqs.send_message_batch
                kwargs: dict[str, Any] = {
                    "QueueUrl": await self._broker.queue_url(name),
                    "Entries": [
                        {"Id": str(r.id), "MessageBody": r.body, "MessageAttributes": sqs_attributes(r.attributes)}
                        | (_fifo_entry(r) if fifo else {})
                        for r in rows
                    ],
                }
            elif kind == "topic":
                call = self._broker.sns.publish_batch
                kwargs = {
                    "TopicArn": self._broker.topic_arn(name),
                    "PublishBatchRequestEntries": [
                        {"Id": str(r.id), "Message": r.body, "MessageAttributes": sqs_attributes(r.attributes)} for r in rows
                    ],
                }
            else:
                return [], {r.id: f"unknown destination kind {kind!r}" for r in rows}
            # The client's own retries (read timeout 30 s, 5 attempts) would hold the rows for
            # minutes; the relay's backoff retries instead, so the call gets a short budget.
            with tracing.publishing(destination, [r.attributes for r in rows], len(rows)):
                response = await asyncio.wait_for(call(**kwargs), self._publish_timeout)
            if self._duplicate_delivery:  # a FIFO queue would drop a copy with the same deduplication id
                again = dict(kwargs)
                if fifo:
                    again["Entries"] = [e | {"MessageDeduplicationId": uuid.uuid4().hex} for e in kwargs["Entries"]]
                await asyncio.wait_for(call(**again), self._publish_timeout)
            if self._chaos_copies and kind == "queue":
                await self._send_copies(call, kwargs, fifo=fifo)
        except Exception as error:  # noqa: BLE001 - any broker error leaves the rows for the next pass
            reason = str(error) or type(error).__name__
            log.warning("relay_publish_failed", service=self._service, destination=destination, error=reason)
            return [], {r.id: reason for r in rows}
        accepted = [int(entry["Id"]) for entry in response.get("Successful", [])]
        failed = {int(entry["Id"]): entry.get("Message", entry.get("Code", "failed")) for entry in response.get("Failed", [])}
        if failed:
            log.warning("relay_entries_rejected", service=self._service, destination=destination, count=len(failed))
        return accepted, failed

    async def _send_copies(self, call: Callable[..., Awaitable[Any]], kwargs: dict[str, Any], *, fifo: bool) -> None:
        """Chaos switch: 1 to ``chaos_copies`` more deliveries of a share of the messages, each
        delayed 0 to 3 s at random so that copies and later messages overtake one another. A
        FIFO queue takes no delay per message and drops a copy with the same deduplication id,
        so there a copy gets an id of its own and follows its group's order."""
        for _ in range(self._chaos_copies):
            entries = [
                entry | ({"MessageDeduplicationId": uuid.uuid4().hex} if fifo else {"DelaySeconds": random.randint(0, 3)})
                for entry in kwargs["Entries"]
                if random.random() < self._chaos_copy_chance
            ]
            if not entries:
                continue
            with contextlib.suppress(Exception):  # a copy that fails is a copy fewer, nothing more
                await asyncio.wait_for(call(**(kwargs | {"Entries": entries})), self._publish_timeout)

    async def _record_backlog(self) -> None:
        async with self._sessions() as session:
            count, oldest = (await session.execute(_BACKLOG)).one()
        metrics.outbox_backlog(self._service, count, float(oldest or 0))


def _fifo_entry(row: Any) -> dict[str, str]:
    """What a FIFO queue needs: the group (the saga, so that its messages keep their order)
    and the deduplication id (the envelope's: a row published twice, after a crash between
    the publish and the marking, reaches the queue once)."""
    return {"MessageGroupId": str(row.saga_id or row.message_id), "MessageDeduplicationId": str(row.message_id)}
