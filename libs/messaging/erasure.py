"""Erasing a person on request: what a service keeps of a customer, and the handler that
removes it.

Each service declares the columns of personal data it keeps (:class:`PersonalData`): which
table, which columns, and how a customer's rows are found (by the customer's id or by the ids
of their orders). An erasure request reaches every service by message; :func:`handler` sets
those columns to NULL in the customer's rows, in the transaction that claims the request in
the inbox (so a redelivery erases nothing twice and answers again), and answers how many
rows it erased. Ids, amounts and statuses are not personal data and stay: the books still
balance after an erasure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, Table, null, or_, update

from .bus import Handler
from .envelope import Envelope, Message
from .uow import UnitOfWork


@dataclass(frozen=True)
class PersonalData:
    """``columns`` of ``table`` hold a customer's personal data; their rows are those whose
    ``by`` column is the customer's id (``customer_id``) or one of their orders' (``order_id``)."""

    table: Table
    columns: tuple[str, ...]
    by: Literal["customer_id", "order_id"]

    def __post_init__(self) -> None:
        missing = [name for name in (*self.columns, self.by) if name not in self.table.c]
        if missing:
            raise ValueError(f"{self.table.name} has no column {', '.join(missing)}")


async def erase(uow: UnitOfWork, kept: Sequence[PersonalData], customer_id: str, order_ids: Sequence[Any]) -> int:
    """Set ``kept``'s columns to NULL in the customer's rows; returns the rows erased."""
    erased = 0
    for data in kept:
        key = data.table.c[data.by]
        match = key == customer_id if data.by == "customer_id" else key.in_(list(order_ids))
        if data.by == "order_id" and not order_ids:
            continue
        still = or_(*(data.table.c[name].isnot(None) for name in data.columns))
        erasing = update(data.table).where(match, still).values({name: null() for name in data.columns})  # SQL NULL, not JSON's
        result = await uow.session.execute(erasing)
        erased += cast(CursorResult[Any], result).rowcount
    return erased


def handler(kept: Sequence[PersonalData], answer: Callable[[Any, int], Message]) -> Handler:
    """The handler of an erasure request (a message with ``customer_id`` and ``order_ids``) for
    a service keeping ``kept`` (perhaps nothing): erases, then replies ``answer(request, erased)``."""

    async def erase_customer(uow: UnitOfWork, envelope: Envelope, request: Any) -> None:
        erased = await erase(uow, kept, request.customer_id, request.order_ids)
        await uow.reply(envelope, answer(request, erased))

    return erase_customer
