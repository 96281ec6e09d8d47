"""The envelope every message travels in, and the registry of message types."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1
"""The contract version this code writes and its payload classes describe."""


def accepted_versions(current: int) -> frozenset[int]:
    """The versions a consumer of contract version ``current`` reads: ``current`` and ``current - 1``."""
    return frozenset(v for v in (current - 1, current) if v >= 1)


SUPPORTED_SCHEMA_VERSIONS = accepted_versions(SCHEMA_VERSION)
"""What a consumer accepts: its own version and the previous release's, so that during a
rolling deploy (and afterwards, for messages still in queues, outboxes or dead-letter queues)
the new release handles every message the old one wrote. Anything else is malformed."""

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns a payload of version ``v`` into the same message's payload of version ``v + 1``."""

UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""``(message type, v) -> upcaster`` for every type whose payload changed between ``v`` and
``v + 1``. A type missing here kept its shape. When ``SCHEMA_VERSION`` is raised, register
the previous version's upcasters (``register_upcaster``, next to the contracts in
``contracts.py``); the release after, which no longer accepts that version, removes them.
Empty while ``SCHEMA_VERSION`` is 1."""


def register_upcaster(message_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Decorator: ``@register_upcaster("ReserveInventory", 1)`` on a function from a version 1
    payload (a dict, as on the wire) to its version 2 payload."""

    def decorate(upcaster: Upcaster) -> Upcaster:
        UPCASTERS[(message_type, from_version)] = upcaster
        return upcaster

    return decorate


class Message(BaseModel):
    """Base class of every command, reply and event payload.

    Subclasses declare ``kind``; the class name is the message type on the wire.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[Literal["command", "reply", "event"]]
    carries_personal_data: ClassVar[bool] = False
    """True for a payload with a secret or personal data, which no store may keep past its use."""
    log_context: ClassVar[tuple[str, ...]] = ()
    """Payload fields the bus binds to the log context while the message is handled."""
    _defined: ClassVar[dict[str, type[Message]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Message._defined[cls.__name__] = cls

    @classmethod
    def message_type(cls) -> str:
        return cls.__name__

    @staticmethod
    def defined(name: str) -> type[Message]:
        """The payload class named ``name``, among every one defined in this process: what a
        stored message is read back with (a participant's remembered reply, for one)."""
        return Message._defined[name]

    @staticmethod
    def personal_types() -> frozenset[str]:
        """Names of the payloads defined in this process that carry a secret or personal data:
        their outbox rows are deleted as soon as they are published."""
        return frozenset(name for name, cls in Message._defined.items() if cls.carries_personal_data)


class Envelope(BaseModel):
    """Metadata around a payload. Serialised as the SQS/SNS message body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_id: uuid.UUID = Field(description="Unique per message; the inbox deduplicates on it.")
    message_type: str = Field(description="Name of the payload's type, e.g. ReserveInventory.")
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    saga_id: uuid.UUID | None = Field(default=None, description="The saga this message belongs to.")
    correlation_id: uuid.UUID = Field(description="Ties together every message of one business flow.")
    causation_id: uuid.UUID | None = Field(default=None, description="message_id of the message that caused this one.")
    sender: str = Field(description="Name of the sending service.")
    reply_to: str | None = Field(default=None, description="Logical queue name that replies go to.")
    step: str | None = Field(
        default=None,
        max_length=100,
        description=(
            "The saga step a command serves, copied into its reply. With saga_id and attempt it is the command's "
            "identity: a resend has a new message_id but the same identity."
        ),
    )
    attempt: int | None = Field(
        default=None,
        ge=1,
        description=("Which attempt of the step's action (or compensation) this is; resends of one attempt share it."),
    )
    occurred_at: datetime = Field(description="When the sender created the message (UTC).")
    payload: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        message: Message,
        *,
        sender: str,
        saga_id: uuid.UUID | None = None,
        correlation_id: uuid.UUID | None = None,
        causation: Envelope | None = None,
        reply_to: str | None = None,
        message_id: uuid.UUID | None = None,
        step: str | None = None,
        attempt: int | None = None,
    ) -> Envelope:
        correlation = correlation_id or (causation.correlation_id if causation else None) or saga_id or uuid.uuid4()
        return cls(
            message_id=message_id or uuid.uuid4(),
            message_type=message.message_type(),
            saga_id=saga_id if saga_id is not None else (causation.saga_id if causation else None),
            correlation_id=correlation,
            causation_id=causation.message_id if causation else None,
            sender=sender,
            reply_to=reply_to,
            step=step,
            attempt=attempt,
            occurred_at=datetime.now(UTC),
            payload=message.model_dump(mode="json"),
        )

    def routing_attributes(self) -> dict[str, str]:
        """Attributes copied to SQS/SNS message attributes so routing needs no body parsing."""
        attributes = {"message_type": self.message_type, "sender": self.sender}
        if self.saga_id:
            attributes["saga_id"] = str(self.saga_id)
        return attributes


class MalformedMessage(Exception):
    """The body is not a valid envelope, or its payload does not match its type.

    Never retried by the handler: the consumer lets the queue's redrive policy move it to
    the dead-letter queue.
    """


class MessageRegistry:
    """Maps message type names to payload classes, and reads the versions a consumer accepts.

    ``schema_version`` and ``upcasters`` default to this release's; a test passes others to
    play a later release reading this one's messages.
    """

    def __init__(
        self,
        *types: type[Message],
        schema_version: int = SCHEMA_VERSION,
        upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
    ) -> None:
        self._types: dict[str, type[Message]] = {}
        self.schema_version = schema_version
        self.supported_versions = accepted_versions(schema_version)
        self._upcasters = upcasters
        for message_type in types:
            self.register(message_type)

    def register(self, message_type: type[Message]) -> type[Message]:
        name = message_type.message_type()
        if self._types.get(name, message_type) is not message_type:
            raise ValueError(f"message type {name} registered twice")
        self._types[name] = message_type
        return message_type

    def __iter__(self) -> Iterator[type[Message]]:
        return iter(self._types.values())

    def __contains__(self, name: str) -> bool:
        return name in self._types

    def get(self, name: str) -> type[Message]:
        return self._types[name]

    def parse(self, body: str) -> tuple[Envelope, Message]:
        """Parse an envelope and its payload, or raise :class:`MalformedMessage`."""
        try:
            envelope = Envelope.model_validate_json(body)
        except ValidationError as error:
            raise MalformedMessage(f"invalid envelope: {error.errors(include_url=False, include_input=False)}") from error
        if envelope.schema_version not in self.supported_versions:
            raise MalformedMessage(f"unsupported schema_version {envelope.schema_version}")
        message_type = self._types.get(envelope.message_type)
        if message_type is None:
            raise MalformedMessage(f"unknown message type {envelope.message_type!r}")
        try:
            payload = self._upcast(envelope.message_type, envelope.schema_version, envelope.payload)
            if payload is not envelope.payload:
                envelope = envelope.model_copy(update={"payload": payload})
            return envelope, message_type.model_validate(payload)
        except ValidationError as error:
            raise MalformedMessage(
                f"invalid {envelope.message_type} payload: {error.errors(include_url=False, include_input=False)}"
            ) from error

    def _upcast(self, message_type: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload in this release's shape: the upcasters applied from its version on."""
        for step in range(version, self.schema_version):
            if upcaster := self._upcasters.get((message_type, step)):
                try:
                    payload = upcaster(dict(payload))
                except (KeyError, TypeError, ValueError) as error:
                    raise MalformedMessage(f"cannot upcast {message_type} from version {step}: {error!r}"[:500]) from error
        return payload
