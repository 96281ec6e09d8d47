"""The message contract: envelopes, parsing of bad input, and the checked-in JSON Schemas."""

from __future__ import annotations

import json
import uuid

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import messages as c
from contracts.schemas import FOLDER, generate, render
from messaging.envelope import Envelope, MalformedMessage


def test_checked_in_schemas_match_the_code():
    generated = generate()
    on_disk = {p.stem for p in FOLDER.glob("*.json")}
    assert on_disk == set(generated), "run `make schemas`"
    for name, schema in generated.items():
        assert (FOLDER / f"{name}.json").read_text() == render(schema), f"{name}.json is stale: run `make schemas`"


def test_a_wrapped_message_round_trips_and_validates_against_its_schemas():
    cause = Envelope.wrap(
        c.ReleaseInventory(order_id=uuid.uuid4()), sender="orchestrator", saga_id=uuid.uuid4(), reply_to="orchestrator-replies"
    )
    reply = Envelope.wrap(c.InventoryReleased(order_id=uuid.uuid4()), sender="inventory", causation=cause)
    assert reply.saga_id == cause.saga_id and reply.causation_id == cause.message_id
    assert reply.correlation_id == cause.correlation_id
    body = json.loads(reply.model_dump_json())
    jsonschema.validate(body, json.loads((FOLDER / "Envelope.json").read_text()))
    jsonschema.validate(body["payload"], json.loads((FOLDER / "InventoryReleased.json").read_text()))
    envelope, message = c.REGISTRY.parse(reply.model_dump_json())
    assert envelope == reply and isinstance(message, c.InventoryReleased)
    assert reply.routing_attributes() == {
        "message_type": "InventoryReleased",
        "sender": "inventory",
        "saga_id": str(cause.saga_id),
    }


@pytest.mark.parametrize(
    "body, error",
    [
        ("{", "invalid envelope"),
        ('{"message_id": "1"}', "invalid envelope"),
        (
            Envelope.wrap(c.ConfirmOrder(order_id=uuid.uuid4()), sender="x")
            .model_copy(update={"message_type": "Nope"})
            .model_dump_json(),
            "unknown message type",
        ),
        (
            Envelope.wrap(c.ConfirmOrder(order_id=uuid.uuid4()), sender="x")
            .model_copy(update={"payload": {"order_id": "x"}})
            .model_dump_json(),
            "invalid ConfirmOrder payload",
        ),
        (
            Envelope.wrap(c.ConfirmOrder(order_id=uuid.uuid4()), sender="x")
            .model_copy(update={"schema_version": 99})
            .model_dump_json(),
            "unsupported schema_version",
        ),
    ],
)
def test_malformed_bodies_are_named_not_crashed_on(body, error):
    with pytest.raises(MalformedMessage, match=error):
        c.REGISTRY.parse(body)


@given(st.text(max_size=300))
def test_any_text_either_parses_or_is_malformed(body):
    try:
        c.REGISTRY.parse(body)
    except MalformedMessage:
        pass


def test_every_example_in_the_message_docs_parses_against_the_code():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "messages.md").read_text()
    examples = [block.split("```", 1)[0] for block in text.split("```json\n")[1:]]
    envelopes = [json.loads(e) for e in examples if '"message_type"' in e]
    documented = set()
    for example in envelopes:
        envelope, message = c.REGISTRY.parse(json.dumps(example))
        documented.add(envelope.message_type)
    assert documented == {t.message_type() for t in c.REGISTRY}, "every message type has a valid example"


PERSONAL_FIELDS = ("email", "address", "payment_token", "phone", "name")


def test_every_message_with_a_field_of_personal_data_is_marked_so():
    """A message carrying an email, an address or a card token is marked, so that every store
    (the outbox, the inbox, a dead-letter queue's copy) keeps it no longer than its use."""
    unmarked = sorted(
        cls.message_type()
        for cls in c.REGISTRY
        if not cls.carries_personal_data
        and any(marker in field for field in cls.model_fields for marker in PERSONAL_FIELDS if field != "definition")
    )
    assert unmarked == []
