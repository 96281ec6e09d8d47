"""Writing to the outbox: the only way a service sends a message."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from .envelope import Envelope

_INSERT = text(
    "INSERT INTO outbox (message_id, destination, message_type, saga_id, body, attributes) "
    "VALUES (:message_id, :destination, :message_type, :saga_id, :body, CAST(:attributes AS jsonb))"
)
_STAGED = "outbox_staged"
"""Key in ``Session.info``: the destinations this session's open transaction staged rows for."""

Committed = Callable[[Collection[str]], None]
_relays: dict[tuple[str | None, int | None, str | None], set[Committed]] = {}
"""The relays of this process, by the database they publish: called after each commit that staged rows."""


def _database(url: URL) -> tuple[str | None, int | None, str | None]:
    return url.host, url.port, url.database


def on_commit(url: URL, committed: Committed) -> Callable[[], None]:
    """Have ``committed(destinations)`` called after each commit in this process that staged
    rows in the database at ``url``; returns the function that stops it.

    This is how a relay learns of new rows at once, at no cost to the database: every row is
    staged by this process's own code (the orders API, the handlers, the operator's actions),
    so the commit is seen where it happens. A row committed by another process (another
    replica that died before its relay ran) waits for a relay's poll."""
    key = _database(url)
    _relays.setdefault(key, set()).add(committed)
    return lambda: _relays.get(key, set()).discard(committed)


@event.listens_for(Session, "after_commit")
def _announce(session: Session, *_: Any) -> None:
    if session.in_nested_transaction():  # a savepoint released: nothing is visible to the relay yet
        return
    staged: set[str] | None = session.info.pop(_STAGED, None)
    if not staged:
        return
    for committed in list(_relays.get(_database(session.get_bind().engine.url), ())):
        committed(staged)


@event.listens_for(Session, "after_soft_rollback")
def _discard(session: Session, previous: SessionTransaction) -> None:
    if not previous.nested:  # undoing a savepoint leaves what was staged before it
        session.info.pop(_STAGED, None)


async def add(session: AsyncSession, envelope: Envelope, destination: str, trace: dict[str, str] | None = None) -> None:
    """Stage ``envelope`` for ``destination`` inside the session's open transaction.

    ``destination`` is ``queue:<logical name>`` or ``topic:<logical name>``. The row becomes
    visible to the relay only when the caller's transaction commits, together with the state
    change that caused it; a rollback discards both. ``trace`` (``traceparent``/``tracestate``)
    joins the routing attributes, which the relay makes the message's attributes.
    """
    kind, _, name = destination.partition(":")
    if kind not in ("queue", "topic") or not name:
        raise ValueError(f"destination must be queue:<name> or topic:<name>, not {destination!r}")

    session.info.setdefault(_STAGED, set()).add(destination)
    await session.execute(
        _INSERT,
        {
            "message_id": envelope.message_id,
            "destination": destination,
            "message_type": envelope.message_type,
            "saga_id": envelope.saga_id,
            "body": envelope.model_dump_json(),
            "attributes": json.dumps(envelope.routing_attributes() | (trace or {})),
        },
    )
