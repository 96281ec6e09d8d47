"""Crash points: places in the shared code where a chaos run may kill the process.

Switched on by ``SAGA_CRASH_POINTS`` (``name:probability,...``, e.g.
``relay_after_publish:0.02``) and ``SAGA_CRASH_SEED``; with neither set, :func:`crash_point`
is a dictionary lookup on an empty dict. The process dies as under ``kill -9``: no cleanup,
no flush, open transactions rolled back by PostgreSQL, received messages left invisible.
"""

from __future__ import annotations

import os
import random
import signal

POINTS = ("consumer_before_delete", "relay_after_claim", "relay_after_publish")
"""after the local commit and before the SQS delete; after claiming outbox rows and before
publishing them; after the broker accepted them and before they are marked published."""


def _parse(spec: str) -> dict[str, float]:
    chances = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, chance = part.partition(":")
        if name not in POINTS:
            raise ValueError(f"unknown crash point {name!r}; known: {', '.join(POINTS)}")
        chances[name] = float(chance or 1)
    return chances


_CHANCES = _parse(os.environ.get("SAGA_CRASH_POINTS", ""))
_RANDOM = random.Random(os.environ.get("SAGA_CRASH_SEED"))


def crash_point(name: str) -> None:
    """Die here with the configured probability; nothing at all when not configured."""
    chance = _CHANCES.get(name)
    if chance and _RANDOM.random() < chance:
        os.kill(os.getpid(), signal.SIGKILL)


FAULTY = os.environ.get("SAGA_FAULT_FIRST_OF", "")
"""Chaos switch: the message type whose first message this process handles fails its handler
every time it is received here, as a bug in one message would (``InjectedFault``)."""
_faulty: set[str] = set()


class InjectedFault(RuntimeError):
    """A handler's failure that ``SAGA_FAULT_FIRST_OF`` asked for."""


def fault_point(message_type: str, message_id: str) -> None:
    """Fail here for the first message of the ``SAGA_FAULT_FIRST_OF`` type, and for it alone."""
    if not FAULTY or message_type != FAULTY:
        return
    if not _faulty:
        _faulty.add(message_id)
    if message_id in _faulty:
        raise InjectedFault(f"injected: {message_type} {message_id} fails here (SAGA_FAULT_FIRST_OF)")
