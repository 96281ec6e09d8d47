"""Admission control: refuse an order up front rather than accept one the saga would cancel.

Every accepted order waits behind those still in flight. Past ``ORDER_MAX_IN_FLIGHT``
orders accepted and not yet finished, the backlog would outlast the saga's 30 s budget
(at the throughput measured on two cores, see the README's Performance section), so
``POST /orders`` answers 503 with ``Retry-After`` instead: nothing is written, nothing is
lost, and the client knows when to come back.

The count comes from the orders table, sampled by ``POST /orders`` itself at most twice a
second (so an idle service does no work for it), plus the orders this process accepted
since the last sample, so a burst between two samples cannot overshoot. Orders older than
the start bound are left out: one whose saga never started is the stranded-order net's
business, and must not close the door on everybody else.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

import structlog
from sqlalchemy import text

from messaging.service import Runtime

from . import domain

log = structlog.get_logger("order_svc")

SAMPLE_INTERVAL = 0.5  # seconds
RATE_WINDOW = 10.0  # seconds over which the finishing rate is measured

_SAMPLE = text(
    "SELECT count(*) FILTER (WHERE status = :pending) AS in_flight, "
    "count(*) FILTER (WHERE status <> :pending AND updated_at > now() - make_interval(secs => :window)) AS finished "
    "FROM orders WHERE created_at > now() - make_interval(secs => :horizon)"
)


@dataclass
class Admission:
    """Whether ``POST /orders`` may accept one more order now."""

    max_in_flight: int
    horizon: float
    """Seconds: orders older than this are not counted (the stranded-order bound)."""
    sampled: int = 0
    accepted_since: int = 0
    finishing_rate: float = 0.0
    """Orders finished per second over the last ``RATE_WINDOW`` seconds."""
    sampled_at: float = field(default=-SAMPLE_INTERVAL, repr=False)
    sampling: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def in_flight(self) -> int:
        return self.sampled + self.accepted_since

    def retry_after(self) -> int | None:
        """None when an order may be accepted; otherwise seconds to wait before retrying."""
        excess = self.in_flight - self.max_in_flight + 1
        if excess <= 0:
            return None
        # The time for the backlog above the bound to drain at the rate orders finish now.
        return max(1, min(30, math.ceil(excess / max(self.finishing_rate, 1.0))))

    def accepted(self) -> None:
        self.accepted_since += 1

    def update(self, in_flight: int, finished: int) -> None:
        self.sampled, self.accepted_since = in_flight, 0
        self.finishing_rate = finished / RATE_WINDOW
        self.sampled_at = time.monotonic()


async def refresh(rt: Runtime, admission: Admission) -> None:
    """Sample the orders table if the last sample is older than ``SAMPLE_INTERVAL``; one
    request samples while the others use what it finds."""
    if time.monotonic() - admission.sampled_at < SAMPLE_INTERVAL:
        return
    async with admission.sampling:
        if time.monotonic() - admission.sampled_at < SAMPLE_INTERVAL:
            return
        try:
            async with rt.sessions() as session:
                row = (
                    await session.execute(
                        _SAMPLE, {"pending": domain.PENDING, "window": RATE_WINDOW, "horizon": admission.horizon}
                    )
                ).one()
        except Exception:  # noqa: BLE001 - the database is briefly down: the order's own insert will say so
            log.warning("admission_sample_failed", exc_info=True)
            return
        admission.update(row.in_flight, row.finished)
