"""The embedded AWS emulator: moto's server, with two of its SQS costs taken out.

    python -m stack.emulator -H 127.0.0.1 -p 5100

moto 5 keeps a queue's messages in a list and, on every receive, asks for the queue's
retention period once per message it looks at through ``get_queue_attributes``, which
computes every attribute, the approximate counts included, each a scan of the whole list;
and it reads the clock through ``datetime`` arithmetic several times per message. A receive
from a queue of n messages therefore costs O(n²), and a backlog of a few thousand messages
(a participant down for 20 s under load) made the emulator, not the system, the limit:
measured with py-spy, most of its CPU went to ``Queue.attributes`` and ``unix_time``.

The patches keep moto's behaviour and its answers: the retention check reads the same
attribute directly, and "now" is the same UTC epoch, taken from ``time.time()``. Nothing
here changes what the services see on the wire; LocalStack and AWS are used as they are.
"""

from __future__ import annotations

import time
from typing import Any


def patch() -> None:
    """Apply the patches to moto in this process (idempotent)."""
    from moto.core import utils
    from moto.sqs import models

    if getattr(models, "_saga_patched", False):
        return
    original = utils.unix_time

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else original(dt)

    utils.unix_time = unix_time  # unix_time_millis calls it through the module
    models.unix_time = unix_time  # imported by name

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return retention + message.sent_timestamp / 1000 > time.time()

    models.SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]
    setattr(models, "_saga_patched", True)  # noqa: B010 - a marker of our own on moto's module


def main() -> None:
    patch()
    from moto.server import main as serve

    serve()


if __name__ == "__main__":
    main()
