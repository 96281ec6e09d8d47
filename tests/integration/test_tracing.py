"""Trace context through the outbox, the relay, SQS and the consumer, on real PostgreSQL and the
emulator, with the SDK's in-memory exporter standing in for OTLP (the e2e test uses OTLP)."""

from __future__ import annotations

import json
import uuid

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from contracts import messages as c
from messaging import tracing
from messaging.aws import sqs_attributes
from messaging.bus import MessageBus
from messaging.consumer import Consumer
from messaging.envelope import Envelope
from messaging.relay import Relay
from messaging.uow import UnitOfWork
from tests.integration.test_messaging import receive_all, record_effect

pytestmark = pytest.mark.integration


@pytest.fixture
def spans(monkeypatch):
    """Tracing switched on for the test, its spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_enabled", True)
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


async def stage_in_span(sessions, queue: str, name: str) -> tuple[uuid.UUID, int]:
    """A command staged inside a span of its own; returns its message id and that span's trace id."""
    with tracing.tracer.start_as_current_span(name) as span:
        async with UnitOfWork(sessions, "test") as uow:
            sent = await uow.send(c.ReleaseInventory(order_id=uuid.uuid4()), f"queue:{queue}", saga_id=uuid.uuid4())
            await uow.commit()
    return sent.message_id, span.get_span_context().trace_id


async def test_a_handled_message_is_a_child_of_the_span_that_staged_it_across_the_outbox_and_sqs(sessions, broker, queue, spans):
    message_id, trace_id = await stage_in_span(sessions, queue, "the request")
    async with sessions() as session:
        query = text("SELECT attributes FROM outbox WHERE message_id = :id")
        stored = (await session.execute(query, {"id": message_id})).scalar_one()
    assert stored["traceparent"].split("-")[1] == format(trace_id, "032x")  # written with the row

    await Relay(sessions, broker, service="relay").publish_pending()
    bus = MessageBus(consumer="traced", sender="test", sessions=sessions, handlers={c.ReleaseInventory: record_effect})
    await Consumer(broker, queue, batch=bus.handle_batch, service="test", wait_time_seconds=1).poll_once()

    finished = {s.name: s for s in spans.get_finished_spans()}
    created, sent, handled = finished[f"create {queue}"], finished[f"send {queue}"], finished[f"process {queue}"]
    assert created.parent.span_id == finished["the request"].context.span_id
    assert created.kind == trace.SpanKind.PRODUCER and created.attributes["messaging.message.id"] == str(message_id)
    assert handled.kind == trace.SpanKind.CONSUMER
    assert handled.context.trace_id == trace_id and handled.parent.span_id == created.context.span_id
    # The relay's batch is no message's parent: a root of its own, linked to what it carried.
    assert sent.parent is None and sent.context.trace_id != trace_id
    assert [link.context.span_id for link in sent.links] == [created.context.span_id]
    assert sent.attributes["messaging.batch.message_count"] == 1


async def test_a_message_published_to_a_topic_starts_a_trace_of_its_own_linked_to_the_publishers(broker, queue, sessions, spans):
    with tracing.tracer.start_as_current_span("the publisher") as publisher:
        with tracing.staging("topic:order-events", "CustomerPushed", "m-1") as carried:
            pass
    assert carried["tracelink"] == "1" and carried["traceparent"]
    # As SNS delivers it to a subscribed queue (raw delivery): the body and the attributes.
    envelope = Envelope.wrap(c.CustomerPushed(order_id=uuid.uuid4(), customer_id="c-1", text="shipped"), sender="test")
    await broker.sqs.send_message(
        QueueUrl=await broker.queue_url(queue),
        MessageBody=envelope.model_dump_json(),
        MessageAttributes=sqs_attributes(envelope.routing_attributes() | carried),
    )
    bus = MessageBus(consumer="events", sender="test", sessions=sessions, handlers={c.CustomerPushed: record_effect})
    await Consumer(broker, queue, batch=bus.handle_batch, service="test", wait_time_seconds=1).poll_once()
    [handled] = [s for s in spans.get_finished_spans() if s.name == f"process {queue}"]
    assert handled.parent is None and handled.context.trace_id != publisher.get_span_context().trace_id
    assert [link.context.trace_id for link in handled.links] == [publisher.get_span_context().trace_id]
    assert handled.attributes["messaging.message.id"] == str(envelope.message_id)


async def test_without_tracing_nothing_is_written_into_the_message(sessions, broker, queue):
    assert not tracing.enabled()
    async with UnitOfWork(sessions, "test") as uow:
        await uow.send(c.ReleaseInventory(order_id=uuid.uuid4()), f"queue:{queue}", saga_id=uuid.uuid4())
        await uow.commit()
    await Relay(sessions, broker, service="relay").publish_pending()
    url = await broker.queue_url(queue)
    response = await broker.sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=1)
    [message] = response["Messages"]
    assert set(message["MessageAttributes"]) == {"message_type", "sender", "saga_id"}
    assert "traceparent" not in json.loads(message["Body"])
    await receive_all(broker, queue)
