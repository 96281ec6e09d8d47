"""The net under every accepted order: one whose saga never started does not stay pending.

An order is placed with its StartOrderSaga in one transaction, but the orchestrator may still
fail to start the saga (the message is dead-lettered, for instance). An order still pending
after ``ORDER_SAGA_START_BOUND`` seconds, well past the saga's 30 s budget, is handed to the
orchestrator with a SettleUnstartedSaga: if the saga never started, it cancels the order with
that reason and escalates; if it did, nothing happens and the saga ends the order itself. The
question is asked again every five bounds while the order stays pending, in case the command
itself was lost.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import text

from contracts import messages as c
from contracts.topology import ORCHESTRATOR_COMMANDS
from messaging.service import Runtime
from messaging.uow import UnitOfWork

from . import domain

log = structlog.get_logger("order_svc")

# created_at is written by this service's clock, so the cutoff is computed by it too.
_DUE = text(
    "SELECT order_id, saga_id FROM orders WHERE status = :pending AND "
    "((start_checked_at IS NULL AND created_at < :cutoff) OR start_checked_at < :recheck) "
    "ORDER BY created_at LIMIT 50 FOR UPDATE SKIP LOCKED"
)
_CHECKED = text("UPDATE orders SET start_checked_at = :now WHERE order_id = ANY(:ids)")


async def check_once(rt: Runtime, bound: timedelta) -> int:
    """Ask about every order pending longer than ``bound``; returns how many."""
    now = datetime.now(UTC)
    reason = f"saga could not start within {bound.total_seconds():g}s"
    async with UnitOfWork(rt.sessions, rt.name) as uow:
        due = (
            await uow.session.execute(_DUE, {"pending": domain.PENDING, "cutoff": now - bound, "recheck": now - 5 * bound})
        ).all()
        for row in due:
            await uow.send(
                c.SettleUnstartedSaga(order_id=row.order_id, reason=reason),
                f"queue:{ORCHESTRATOR_COMMANDS}",
                saga_id=row.saga_id,
                correlation_id=row.saga_id,
            )
        if due:
            await uow.session.execute(_CHECKED, {"now": now, "ids": [row.order_id for row in due]})
            await uow.commit()
            log.warning("orders_pending_too_long", count=len(due))
    return len(due)


def worker(bound: float, interval: float):
    async def stranded_orders(rt: Runtime) -> None:
        while not rt.stop.is_set():
            try:
                await check_once(rt, timedelta(seconds=bound))
            except Exception:  # noqa: BLE001 - the database is briefly down: the next pass retries
                log.exception("stranded_check_failed")
            try:
                await asyncio.wait_for(rt.stop.wait(), interval)
            except TimeoutError:
                pass

    return stranded_orders
