"""Orders and messages for every layer of tests, built in one place: change a contract here,
not in each test. Ids are random, so tests share databases without cleaning them."""

from __future__ import annotations

import uuid
from typing import Any, Self

from contracts import messages as c
from messaging.envelope import Envelope, Message
from orchestrator.cancellation_saga import cancellation_saga
from orchestrator.engine import SagaDefinition, SagaState, Transition
from orchestrator.handlers import staged
from orchestrator.order_saga import order_saga
from orchestrator.testing import EPOCH as T0
from orchestrator.testing import SagaScenario

ADDRESS = {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}


def order_body(sku: str = "SKU-1", quantity: int = 2, **overrides: Any) -> dict[str, Any]:
    """What a customer posts to ``POST /orders``: 2 x 12.50 USD, paid with ``tok_visa``."""
    body: dict[str, Any] = {
        "customer_id": "c-1",
        "customer_email": "ada@example.com",
        "currency": "USD",
        "items": [{"sku": sku, "quantity": quantity, "unit_price": "12.50"}],
        "payment_token": "tok_visa",
        "shipping_address": dict(ADDRESS),
    }
    if "country" in overrides:
        body["shipping_address"]["country"] = overrides.pop("country")
    body.update(overrides)
    return body


def order_data(**overrides: Any) -> dict[str, Any]:
    """The order saga's data as order_svc starts it (StartOrderSaga without its definition)."""
    return start_order_saga(**overrides).model_dump(mode="json", exclude={"definition"})


def start_order_saga(**overrides: Any) -> c.StartOrderSaga:
    body = order_body(**overrides)
    return c.StartOrderSaga(order_id=uuid.uuid4(), total="25.00", **body)


def cancellation_data(order_id: uuid.UUID | None = None, **overrides: Any) -> dict[str, Any]:
    """The order_cancellation saga's data as order_svc starts it."""
    start = c.StartOrderCancellation(
        order_id=order_id or uuid.uuid4(), customer_id="c-1", customer_email="ada@example.com", **overrides
    )
    return start.model_dump(mode="json", exclude={"definition"})


def reply(message_type: type[Message], order_id: uuid.UUID | str, **fields: Any) -> Message:
    """A reply of ``message_type`` about the order, with made-up values for its other fields."""
    defaults: dict[str, Any] = {"payment_id": uuid.uuid4(), "shipment_id": uuid.uuid4(), "amount": "25.00", "reason": "no"}
    wanted = {k: v for k, v in defaults.items() if k in message_type.model_fields} | fields
    return message_type(order_id=order_id, **wanted)


LINE = c.Line(sku="SKU-1", quantity=1, unit_price="1.00")


def command(saga_id: uuid.UUID, message: Message, step: str, attempt: int = 1) -> Envelope:
    """A command as the orchestrator sends it for ``step``."""
    return Envelope.wrap(
        message, sender="orchestrator", saga_id=saga_id, reply_to="orchestrator-replies", step=step, attempt=attempt
    )


def answer(
    state: SagaState, message: Message, step: str, *, sender: str, compensation: bool = False, **envelope: Any
) -> Envelope:
    """The participant's reply to the saga's latest command (or compensation) for ``step``, as
    it sends it: under its own name, naming that command as its causation."""
    sent = state.step(step).compensation_ids if compensation else state.step(step).command_ids
    wrapped = Envelope.wrap(message, sender=sender, saga_id=state.saga_id, step=step, **envelope)
    return wrapped.model_copy(update={"causation_id": uuid.UUID(sent[-1])})


class Saga(SagaScenario):
    """A saga under test, given/expect style, whose replies are built from their type alone:
    ``saga.reply(c.InventoryReserved)``, ``saga.fail(c.PaymentFailed, "declined")``. What it
    sends is read as the orchestrator stages it: this system's messages and queues."""

    def __init__(self, definition: SagaDefinition, data: dict[str, Any]) -> None:
        self.data = data
        self.order_id = uuid.UUID(data["order_id"])
        super().__init__(definition, data, now=T0, stage=staged)

    def reply(self, message_type: Any, **fields: Any) -> Transition:  # type: ignore[override]
        message = message_type if isinstance(message_type, Message) else reply(message_type, self.order_id, **fields)
        super().reply(message)
        return self.last

    def fail(self, message_type: type[Message], reason: str = "no") -> Transition:
        return self.reply(message_type, reason=reason)

    def tick(self, seconds: float) -> Transition:  # type: ignore[override]
        super().tick(seconds)
        return self.last

    def succeed(self, *message_types: type[Message]) -> Self:
        for message_type in message_types:
            self.reply(message_type)
        return self


def order_saga_under_test(**overrides: Any) -> Saga:
    return Saga(order_saga(), order_data(**overrides))


def cancellation_under_test(**overrides: Any) -> Saga:
    return Saga(cancellation_saga(), cancellation_data(**overrides))
