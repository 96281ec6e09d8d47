"""The embedded AWS emulator: moto's server, with three of its SQS costs taken out.

    python -m stack.emulator -H 127.0.0.1 -p 5100

moto 5 keeps a queue's messages in a list and, on every receive, asks for the queue's
retention period once per message it looks at through ``get_queue_attributes``, which
computes every attribute, the approximate counts included, each a scan of the whole list;
and it reads the clock through ``datetime`` arithmetic several times per message. A receive
from a queue of n messages therefore costs O(n²), and a backlog of a few thousand messages
(a participant down for 20 s under load) made the emulator, not the system, the limit:
measured with py-spy, most of its CPU went to ``Queue.attributes`` and ``unix_time``.

The patches keep moto's behaviour and its answers: the retention check reads the same
attribute directly, and "now" is the same UTC epoch, taken from ``time.time()``. Two more
concern FIFO queues (``orchestrator-replies``): a send no longer computes every attribute of
the queue four times, and a long poll sees a message group unblocked as soon as its message
in flight is deleted, as SQS does, rather than at the end of the poll. Nothing
here changes what the services see on the wire; LocalStack and AWS are used as they are.
"""

from __future__ import annotations

import threading
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

    # A send to a FIFO queue reads ContentBasedDeduplication through ``Queue.attributes`` four
    # times (validation, deduplication id, the duplicate check), and each reading computes every
    # attribute, the approximate counts included, each a scan of the queue. While a message is
    # sent, the property answers that one attribute instead, as moto computes it.
    sending = threading.local()
    every_attribute = models.Queue.attributes

    def attributes(self: Any) -> dict[str, Any]:
        if getattr(sending, "active", False) and self.fifo_queue:
            value = self.content_based_deduplication
            return {"ContentBasedDeduplication": str(value).lower() if isinstance(value, bool) else value}
        return every_attribute.fget(self)  # type: ignore[attr-defined,no-any-return]

    send_message = models.SQSBackend.send_message

    def send_one(self: Any, *args: Any, **kwargs: Any) -> Any:
        sending.active = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            sending.active = False

    models.Queue.attributes = property(attributes)  # type: ignore[assignment]

    # A receive from a FIFO queue copies the groups in flight once, when it starts, and skips
    # their messages until it returns: a group whose message was deleted meanwhile stays blocked
    # for the rest of that long poll (up to 20 s), which SQS does not do. The copy is made live.
    models.Queue.pending_message_groups = property(_LiveGroups)  # type: ignore[assignment]

    # Between two looks a long poll waits until a message is added, and not at all while any
    # message is visible: on a FIFO queue whose visible messages all wait behind their groups
    # it spun, a core's worth of CPU per poll. It now waits for an add or a delete (which may
    # unblock a group), a quarter of a second at most (a message's visibility running out
    # notifies nobody).
    def wait_for_messages(self: Any, timeout: int) -> None:
        with self._messages_lock:
            self._messages_lock.wait(timeout=min(timeout, 0.25))

    delete_message = models.Queue.delete_message

    def delete_and_notify(self: Any, receipt_handle: str) -> None:
        delete_message(self, receipt_handle)
        with self._messages_lock:
            self._messages_lock.notify_all()

    models.Queue.wait_for_messages = wait_for_messages  # type: ignore[method-assign]
    models.Queue.delete_message = delete_and_notify  # type: ignore[method-assign]
    models.SQSBackend.send_message = send_one  # type: ignore[method-assign]
    setattr(models, "_saga_patched", True)  # noqa: B010 - a marker of our own on moto's module


class _LiveGroups:
    """The message groups with a message in flight in ``queue``, asked anew at each look."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def __contains__(self, group: object) -> bool:
        return any(message.group_id == group for message in self._queue.pending_messages)

    def __iter__(self) -> Any:
        return iter({m.group_id for m in self._queue.pending_messages if m.group_id is not None})

    def __deepcopy__(self, memo: dict[int, Any]) -> _LiveGroups:
        return self


def main() -> None:
    patch()
    from moto.server import main as serve

    serve()


if __name__ == "__main__":
    main()
