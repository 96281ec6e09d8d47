"""Who may send what to which queue, checked on every message a consumer receives.

An envelope names its sender (``Envelope.sender``), and anyone who can send to a queue can
write any name there. Two checks stand between that and a handler:

* **the claimed sender**: a queue takes messages only from the services its topology names
  (:attr:`messaging.naming.Queue.senders`); a payment command that claims to come from
  order_svc is refused whoever sent it;
* **the proven sender**, where there is one to prove it: SQS stamps every message with the
  ``SenderId`` of the principal that sent it (for an ECS task, its role's unique id and the
  session), which no sender can set. Given each service's principal id
  (``SAGA_SENDER_PRINCIPALS``, which Terraform sets from the task roles), a message whose
  ``SenderId`` is not its claimed sender's is refused. The emulators stamp one id on every
  message, so locally only the claimed sender is checked.

A refused message (:class:`ForgedMessage`) never reaches a handler: the bus logs it, counts it
and deletes it, claiming no inbox row, so it neither holds its FIFO group nor waits in a
dead-letter queue from which a redrive would deliver it again. On AWS the queue policies
(``infra/queues.tf``) already deny every other principal; these checks hold when a policy is
loosened by mistake, and against a service whose own role is compromised but that claims to be
another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .envelope import Envelope, MalformedMessage


class ForgedMessage(MalformedMessage):
    """A message from a sender its queue does not take, or whose proven sender is another."""


@dataclass(frozen=True)
class Trust:
    senders: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Logical queue name -> the services whose messages it takes. A queue not named here takes
    any (a system's own test queues)."""
    principals: Mapping[str, str] = field(default_factory=dict)
    """Service -> the principal id SQS stamps its messages with (``SenderId`` before the ``:``,
    an ``AROA...`` role id on ECS). Empty: no proof is asked for."""
    redriver: str | None = None
    """The service that redrives dead-letter queues: a message it sent back keeps its original
    sender, so its principal may carry any sender's message."""
    own: str | None = None
    """The service that consumes: a message its consumer moved to a dead-letter queue itself
    carries its own principal, and may come back to it by a redrive."""

    def check(self, queue: str, envelope: Envelope, sender_id: str | None) -> None:
        """Raise :class:`ForgedMessage` unless ``envelope`` may come to ``queue`` as it says."""
        allowed = self.senders.get(queue)
        if allowed is not None and envelope.sender not in allowed:
            raise ForgedMessage(f"{queue} takes no {envelope.message_type} from {envelope.sender!r}")
        if not self.principals:
            return
        principal = (sender_id or "").split(":", 1)[0]
        expected = {self.principals.get(name or "") for name in (envelope.sender, self.redriver, self.own)} - {None}
        if principal not in expected:
            said = principal or "unknown"
            raise ForgedMessage(f"{envelope.message_type} claims to come from {envelope.sender!r}, but SQS says {said!r}")


ANYONE = Trust()
"""No check: for a bus whose messages do not come from a queue (tests of handlers)."""
