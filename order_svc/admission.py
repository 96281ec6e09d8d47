"""Admission control: refuse an order up front rather than accept one the saga would cancel.

Every accepted order waits behind those still in flight. Past ``ORDER_MAX_IN_FLIGHT``
orders accepted and not yet finished, the backlog would outlast the saga's 30 s budget
(at the throughput measured on two cores, see docs/performance.md), so
``POST /orders`` answers 503 with ``Retry-After`` instead: nothing is written, nothing is
lost, and the client knows when to come back.

**The bound is one for the whole deployment, whatever the number of order_svc replicas.**
The orders table, shared by every replica, is the count: an order is in flight from the
moment it is admitted, i.e. from the transaction that inserts it. That transaction, after
its inserts and just before its commit, takes a transaction-scoped advisory lock
(``pg_advisory_xact_lock``), counts the pending orders, its own included, and rolls back if
they are more than the bound. The lock serialises these last steps across processes: under
READ COMMITTED the count is a statement of its own, after the lock, so it sees every order
admitted by an earlier holder (committed before that holder let go). The lock is held for
the count and the commit only, two round trips; the partial index ``orders_pending`` keeps
the count to the pending orders. A count rather than a counter: nothing to keep in step
with the order's status changes, and nothing to drift; it heals itself.

**The bound adapts to what the system has shown it can carry.** A fixed bound cannot know the
machine: sized on a fast hour it lets in, on a slow one, more than can finish within the
budget, and the saga's resends and compensations then multiply the work per order. So the
bound is ``capacity x ORDER_ADMISSION_TARGET_SECONDS`` (Little's law: at that many in
flight, an order waits about the target), at least ``ORDER_MIN_IN_FLIGHT`` and at most
``ORDER_MAX_IN_FLIGHT`` (the operator's cap). Below capacity orders finish faster than the
target and the bound is never reached; past it, throughput stays at capacity and the
latency of an admitted order near the target, and the rest are refused.

The capacity is the better of two rates. One is what finishes now: the orders finished in
the last ``RATE_WINDOW`` seconds of the shared orders table, sampled by each process at most
twice a second, so the replicas' bounds agree to within the orders finished in half a second.
The other is the best such rate the deployment has shown in the last
``ORDER_CAPACITY_MEMORY_SECONDS``, kept in one row of ``admission_capacity`` that every
replica reads with its sample and raises when it sees better. A finishing rate alone is
only what was offered: an idle system finishes nothing, and a bound made of it refused a
shop's first rush after a quiet hour although the system carried it in a second. The
remembered best is what the system has proved under load, so it is not refused again.
``ORDER_MIN_IN_FLIGHT`` is what a deployment that has shown nothing yet admits at once (100:
at this machine's measured capacity, 17 orders a second, the last of them waits about 6 s,
well within the saga's 30 s budget). ``ORDER_ADMISSION_TARGET_SECONDS=0``: the cap alone.

**No one customer can take the whole bound.** Under the same lock the transaction also counts
the pending orders of the order's customer, and refuses (429, with ``Retry-After``) one that
would put that customer above ``ORDER_MAX_IN_FLIGHT_PER_CUSTOMER``: a client at its cap is
refused while every other customer's order is still admitted. The customer is the one the
order names, or, with a token issuer configured, the token's subject.

Orders older than the start bound are left out: one whose saga never started is the
stranded-order net's business, and must not close the door on everybody else.

The fast path: each process remembers the last count it saw (its own admissions' counts,
or a sample); while that is under ``SAMPLE_INTERVAL`` old and already at the bound, an order
is refused without a transaction. This only ever refuses early, never admits. The rate at
which orders finish, which the bound and ``Retry-After`` are made of, is sampled at most
twice a second per process while orders arrive (and not at all when none do).
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.service import Runtime

from . import domain

log = structlog.get_logger("order_svc")

SAMPLE_INTERVAL = 0.5  # seconds
RATE_WINDOW = 10.0  # seconds over which the finishing rate is measured
MAX_RETRY_AFTER = 30  # seconds, the saga's budget
LOCK = 0x0AD3_1551  # advisory lock key in order_svc's database: one admission at a time
"""Distinct from the migrator's (``messaging.migrations``), the only other one there."""

_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
# created_at is written by this service's clock, so the cutoff is computed by it too.
_IN_FLIGHT = text("SELECT count(*) FROM orders WHERE status = :pending AND created_at > :cutoff")
_CUSTOMER_IN_FLIGHT = text(
    "SELECT count(*) FROM orders WHERE status = :pending AND customer_id = :customer AND created_at > :cutoff"
)
_SAMPLE = text(
    "SELECT count(*) FILTER (WHERE status = :pending) AS in_flight, "
    "count(*) FILTER (WHERE status <> :pending AND updated_at > :window) AS finished, "
    "(SELECT orders_per_second FROM admission_capacity WHERE id = 1 AND seen_at > :remembered) AS best "
    "FROM orders WHERE created_at > :cutoff"
)
# Raised only: a better rate, or any rate once the one kept is older than the memory.
_REMEMBER = text(
    "INSERT INTO admission_capacity (id, orders_per_second, seen_at) VALUES (1, :rate, :now) "
    "ON CONFLICT (id) DO UPDATE SET orders_per_second = excluded.orders_per_second, seen_at = excluded.seen_at "
    "WHERE admission_capacity.orders_per_second <= excluded.orders_per_second "
    "OR admission_capacity.seen_at <= :remembered"
)


def retry_after(excess: int, finishing_rate: float) -> int:
    """Seconds for ``excess`` orders above the bound to drain at ``finishing_rate`` a second:
    at least 1, at most the saga's budget (when nothing finishes, nothing better is known)."""
    return max(1, min(MAX_RETRY_AFTER, math.ceil(max(excess, 1) / max(finishing_rate, 1.0))))


def admits(in_flight: int, max_in_flight: int) -> bool:
    """Whether ``in_flight`` orders, the one being admitted among them, are within the bound."""
    return in_flight <= max_in_flight


def adaptive_bound(finishing_rate: float, *, target: float, least: int, most: int) -> int:
    """Orders in flight that finish within about ``target`` seconds at ``finishing_rate`` a
    second, between ``least`` and ``most`` (``most`` alone when ``target`` is 0)."""
    if target <= 0:
        return most
    return max(min(least, most), min(most, math.ceil(finishing_rate * target)))


@dataclass
class Admission:
    """What one process knows of the deployment's orders in flight; no I/O."""

    max_in_flight: int
    horizon: float
    per_customer: int = 1_000_000
    """Orders in flight one customer may have at most."""
    """Seconds: orders older than this are not counted (the stranded-order bound)."""
    target: float = 0.0
    """Seconds an admitted order should wait at most, at the rate orders finish (0: a fixed bound)."""
    min_in_flight: int = 1
    memory: float = 86_400.0
    """Seconds the best finishing rate seen is remembered."""
    in_flight: int = 0
    """The latest count this process saw, of orders admitted and not finished."""
    counted_at: float = field(default=-math.inf, repr=False)
    finishing_rate: float = 0.0
    """Orders finished per second over the last ``RATE_WINDOW`` seconds."""
    best_rate: float = 0.0
    """The best finishing rate the deployment showed within ``memory`` (as last read or seen)."""
    sampled_at: float = field(default=-math.inf, repr=False)
    sampling: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.horizon)

    def full(self, now: float | None = None) -> bool:
        """The fast path: a count under ``SAMPLE_INTERVAL`` old says there is no room."""
        now = time.monotonic() if now is None else now
        return now - self.counted_at < SAMPLE_INTERVAL and not admits(self.in_flight + 1, self.bound())

    def capacity(self) -> float:
        """Orders a second the deployment can finish, as far as it has shown."""
        return max(self.finishing_rate, self.best_rate)

    def bound(self) -> int:
        """The deployment's bound now: adapted to the capacity last sampled."""
        return adaptive_bound(self.capacity(), target=self.target, least=self.min_in_flight, most=self.max_in_flight)

    def counted(self, in_flight: int, now: float | None = None) -> None:
        """A count of the orders in flight (this one not among them if it was refused)."""
        self.in_flight = in_flight
        self.counted_at = time.monotonic() if now is None else now

    def sampled(self, in_flight: int, finished: int, best: float | None = None, now: float | None = None) -> bool:
        """Record a sample; True when its rate is better than the best remembered (to be kept)."""
        now = time.monotonic() if now is None else now
        self.counted(in_flight, now)
        self.finishing_rate = finished / RATE_WINDOW
        self.sampled_at = now
        better = self.finishing_rate > (best or 0.0)
        self.best_rate = max(best or 0.0, self.finishing_rate)
        return better

    def needs_sample(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - self.sampled_at >= SAMPLE_INTERVAL

    def retry_after(self) -> int:
        """For a refused order: how long the orders above the bound take to drain."""
        return retry_after(self.in_flight + 1 - self.bound(), self.capacity())


class Verdict(enum.Enum):
    ADMITTED = "admitted"
    FULL = "full"
    """The deployment's bound is reached: 503."""
    CUSTOMER_FULL = "customer_full"
    """This customer's cap is reached: 429."""


async def admit(session: AsyncSession, admission: Admission, now: datetime, customer: str) -> Verdict:
    """In the transaction that has just inserted a pending order of ``customer`` created at
    ``now``, as its last statements before the commit: whether the deployment's orders in
    flight, and the customer's, this one included, are within their bounds. Anything but
    ADMITTED means the caller must roll back.

    The advisory lock is released by the caller's commit or rollback; taken after the
    order's own inserts, it is never held while waiting for a row lock (a concurrent
    request with the same Idempotency-Key), so it cannot be part of a deadlock."""
    await session.execute(_LOCK, {"key": LOCK})
    # A statement of its own, after the lock: its snapshot holds every earlier holder's order.
    cutoff = admission.cutoff(now)
    in_flight = (await session.execute(_IN_FLIGHT, {"pending": domain.PENDING, "cutoff": cutoff})).scalar_one()
    if not admits(in_flight, admission.bound()):
        admission.counted(in_flight - 1)
        return Verdict.FULL
    admission.counted(in_flight)
    theirs = (
        await session.execute(_CUSTOMER_IN_FLIGHT, {"pending": domain.PENDING, "customer": customer, "cutoff": cutoff})
    ).scalar_one()
    if not admits(theirs, admission.per_customer):
        admission.counted(in_flight - 1)
        return Verdict.CUSTOMER_FULL
    return Verdict.ADMITTED


async def refresh(rt: Runtime, admission: Admission) -> None:
    """Sample the orders table for the finishing rate (and the count) if the last sample is
    older than ``SAMPLE_INTERVAL``; one request samples while the others use what it finds.
    Only requests need it, so an idle service does no work for it."""
    if not admission.needs_sample():
        return
    async with admission.sampling:
        if not admission.needs_sample():
            return
        now = datetime.now(UTC)
        remembered = now - timedelta(seconds=admission.memory)
        try:
            async with rt.sessions() as session:
                row = (
                    await session.execute(
                        _SAMPLE,
                        {
                            "pending": domain.PENDING,
                            "window": now - timedelta(seconds=RATE_WINDOW),
                            "cutoff": admission.cutoff(now),
                            "remembered": remembered,
                        },
                    )
                ).one()
                better = admission.sampled(row.in_flight, row.finished, row.best)
                if better and admission.memory > 0:
                    await session.execute(_REMEMBER, {"rate": admission.finishing_rate, "now": now, "remembered": remembered})
                    await session.commit()
        except Exception:  # noqa: BLE001 - the database is briefly down: Retry-After is made of what is known
            log.warning("admission_sample_failed", exc_info=True)
            admission.sampled_at = time.monotonic()  # not again at once: the bound stays what was known
            return
