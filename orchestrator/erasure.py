"""Erasure on request: a customer's personal data removed from every service, by message.

An operator asks (``POST /operator/erasures``, ``sagactl erase --customer``); the request is in
the audit log as every operator write is. In one transaction the orchestrator records it,
removes the customer's email and address from its own sagas' data, and sends
``EraseCustomerData`` (the customer and the ids of their orders, from those sagas) to every
participant through its outbox. Each participant erases what it keeps of that customer (see
``messaging.erasure``) and answers ``CustomerDataErased``; the erasure is complete once all
have answered. Ids, amounts and statuses stay, so the books still balance.

A saga already purged after its retention has left nothing personal here, and its
participants' records of it have passed their own retention too (notifications: 30 days;
orders' email and address: 30 days after the order is final): order_svc, which finds a
customer's orders by the customer's id, erases those whatever their age.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import messages as c
from contracts.topology import ORCHESTRATOR_REPLIES, PARTICIPANT_SERVICES, QUEUES
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork

from .tables import erasures

PERSONAL_KEYS = ("customer_email", "shipping_address")
"""What a saga's data may hold of a person (its steps forget each once used; this is the rest)."""

_ERASE_SAGAS = text(
    "UPDATE sagas SET data = data - CAST(:keys AS text[]) WHERE data ->> 'customer_id' = :customer "
    "RETURNING data ->> 'order_id' AS order_id, (data ?| CAST(:keys AS text[])) AS had"
)
_ORDERS = text("SELECT DISTINCT data ->> 'order_id' FROM sagas WHERE data ->> 'customer_id' = :customer")
_KEPT = text("SELECT count(*) FROM sagas WHERE data ->> 'customer_id' = :customer AND data ?| CAST(:keys AS text[])")


COMMAND_QUEUES = {q.owner: q.name for q in QUEUES if q.owner in PARTICIPANT_SERVICES}
"""Each participant's command queue, where the orchestrator sends it commands."""


async def request(uow: UnitOfWork, customer_id: str, reason: str, actor: str) -> dict[str, Any]:
    """Record an erasure of ``customer_id``, erase it here, and ask every participant to."""
    session = uow.session
    erasure_id, at = uuid.uuid4(), datetime.now(UTC)
    order_ids = sorted(
        {uuid.UUID(row[0]) for row in await session.execute(_ORDERS, {"customer": customer_id}) if row[0]}, key=str
    )
    kept = (await session.execute(_KEPT, {"customer": customer_id, "keys": list(PERSONAL_KEYS)})).scalar_one()
    await session.execute(_ERASE_SAGAS, {"customer": customer_id, "keys": list(PERSONAL_KEYS)})
    await session.execute(
        erasures.insert().values(
            erasure_id=erasure_id,
            customer_id=customer_id,
            reason=reason,
            requested_by=actor,
            requested_at=at,
            orders=len(order_ids),
            answers={"orchestrator": kept},
        )
    )
    command = c.EraseCustomerData(erasure_id=erasure_id, customer_id=customer_id, order_ids=order_ids)
    for service in PARTICIPANT_SERVICES:
        await uow.send(command, f"queue:{COMMAND_QUEUES[service]}", saga_id=erasure_id, reply_to=ORCHESTRATOR_REPLIES)
    return await view(session, erasure_id) or {}


_ANSWERED = text(
    "UPDATE erasures SET answers = answers || jsonb_build_object(CAST(:service AS text), CAST(:erased AS int)), "
    "completed_at = CASE WHEN completed_at IS NULL AND (answers || jsonb_build_object(CAST(:service AS text), 0)) "
    "?& CAST(:everyone AS text[]) THEN now() ELSE completed_at END "
    "WHERE erasure_id = :id"
)


async def answered(uow: UnitOfWork, envelope: Envelope, reply: c.CustomerDataErased) -> None:
    """A participant's answer: recorded under its name (the envelope's sender, which the
    consumer has checked), and the erasure complete once every participant answered."""
    if envelope.sender not in PARTICIPANT_SERVICES:
        return
    await uow.session.execute(
        _ANSWERED,
        {"id": reply.erasure_id, "service": envelope.sender, "erased": reply.erased, "everyone": list(PARTICIPANT_SERVICES)},
    )


async def view(session: AsyncSession, erasure_id: uuid.UUID) -> dict[str, Any] | None:
    row = (await session.execute(select(erasures).where(erasures.c.erasure_id == erasure_id))).first()
    return _view(row._mapping) if row is not None else None


async def listing(session: AsyncSession, customer_id: str | None, limit: int) -> list[dict[str, Any]]:
    query = select(erasures).order_by(erasures.c.requested_at.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(erasures.c.customer_id == customer_id)
    return [_view(row._mapping) for row in await session.execute(query)]


def _view(row: Any) -> dict[str, Any]:
    answers = dict(row["answers"])
    return {
        **{k: row[k] for k in ("erasure_id", "customer_id", "reason", "requested_by", "requested_at", "orders", "completed_at")},
        "answers": answers,
        "waiting_for": [s for s in PARTICIPANT_SERVICES if s not in answers],
        "status": "completed" if row["completed_at"] is not None else "in_progress",
    }
