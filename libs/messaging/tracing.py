"""OpenTelemetry tracing across the outbox and SQS/SNS: one trace per saga.

Configured by the standard variables (``OTEL_TRACES_EXPORTER``: ``otlp``, ``console`` or
``none``; ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``, ...,
read by the SDK itself). With no exporter (the default) nothing is installed: no SDK, no
instrumentation, no context written into messages, so tracing costs nothing.

How a trace crosses the broker, the W3C way (as MassTransit, NServiceBus and Eventuate do):

* a message staged in the outbox gets a ``create <destination>`` span (PRODUCER), child of
  whatever span staged it, and that span's context as ``traceparent``/``tracestate`` among the
  row's attributes, in the transaction that stages it; the relay copies the attributes to the
  SQS or SNS message attributes, as it does the routing ones;
* the relay's publish of a batch is a ``send <destination>`` span of its own, linked to each
  message's context, never their parent: a batch holds messages of unrelated sagas;
* the receiver's ``process <queue>`` span (CONSUMER) continues the message's context, so a
  command or reply handled is a child of the span that staged it; an event (published to a
  topic, for whoever subscribes) starts a trace of its own, linked to the one that published it.

The orchestrator keeps a saga's context with the saga (:func:`carrier`/:func:`context_of`),
so that what happens to a saga without a causing message (a deadline, a resend, an
operator's action) is a span in the saga's trace, linked to what caused it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Link, SpanKind

log = structlog.get_logger("tracing")

TRACE_ATTRIBUTES = ("traceparent", "tracestate", "tracelink")
"""The message attributes that carry a trace context (W3C Trace Context), and ``tracelink=1``
on a message published to a topic: its receivers link to that context rather than continue it."""
_enabled = False
tracer = trace.get_tracer("messaging")


def enabled() -> bool:
    return _enabled


def configure(service: str, exporter_name: str) -> bool:
    """Install the SDK and ``exporter_name`` (``OTEL_TRACES_EXPORTER``, checked by the service's
    settings) for ``service`` if one is configured; whether it was."""
    global _enabled, tracer
    if exporter_name == "none" or _enabled:
        return _enabled
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    # service.name is each service's own: six services, or several replicas of one, never share
    # one. OTEL_SERVICE_NAME, when set, names the deployment they belong to (service.namespace).
    namespace = os.environ.pop("OTEL_SERVICE_NAME", "")
    resource = Resource.create({SERVICE_NAME: service, **({"service.namespace": namespace} if namespace else {})})
    provider = TracerProvider(resource=resource, **({} if os.environ.get("OTEL_TRACES_SAMPLER") else {"sampler": _sampler()}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("messaging")
    _instrument_libraries()
    _enabled = True  # logged by the service once its JSON logs are set up ("service_started")
    return True


class _NoStrayCalls:
    """The root sampler unless ``OTEL_TRACES_SAMPLER`` says otherwise: a database statement or
    an AWS call with no span around it (a consumer's long poll, the relay's and the deadline
    worker's passes, the janitor) is not a trace worth keeping; every other root is."""

    def should_sample(  # noqa: PLR0913 - the SDK's Sampler interface
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> Any:
        from opentelemetry.sdk.trace.sampling import Decision, SamplingResult

        decision = Decision.DROP if kind == SpanKind.CLIENT else Decision.RECORD_AND_SAMPLE
        return SamplingResult(decision, attributes, trace_state)

    def get_description(self) -> str:
        return "NoStrayCalls"


def _sampler() -> Any:
    from opentelemetry.sdk.trace.sampling import ParentBased

    return ParentBased(root=_NoStrayCalls())  # type: ignore[arg-type]


def _instrument_libraries() -> None:
    """The AWS calls (aiobotocore's, from opentelemetry-instrumentation-botocore; its SQS part
    injects no context, which the relay's message attributes carry instead). FastAPI and
    SQLAlchemy are instrumented per app and per engine (:func:`instrument_app`, :func:`instrument_engine`)."""
    from opentelemetry.instrumentation.botocore import AiobotocoreInstrumentor

    AiobotocoreInstrumentor().instrument()  # type: ignore[no-untyped-call]


def instrument_app(app: Any) -> None:
    """FastAPI: a span per request, continuing a caller's ``traceparent`` header."""
    if _enabled:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="/health,/metrics")


def instrument_engine(engine: Any) -> None:
    """SQLAlchemy: a span per statement (the asyncpg driver underneath is not instrumented too)."""
    if _enabled:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # skip_dep_check: its declared range stops below SQLAlchemy 2.1, whose engine events it uses unchanged.
        SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, enable_commenter=False, skip_dep_check=True)


def shutdown() -> None:
    """Export what is still buffered (at a clean stop)."""
    provider = trace.get_tracer_provider()
    if _enabled and hasattr(provider, "shutdown"):
        provider.shutdown()


# --------------------------------------------------------------------------- carrying context
def carrier() -> dict[str, str]:
    """The current span's context as ``traceparent``/``tracestate`` (empty when not tracing)."""
    if not _enabled:
        return {}
    headers: dict[str, str] = {}
    inject(headers)
    return {k: v for k, v in headers.items() if k in TRACE_ATTRIBUTES}


def context_of(headers: Mapping[str, str] | None) -> otel_context.Context | None:
    """The context ``headers`` carry, None when they carry none."""
    if not _enabled or not headers or "traceparent" not in headers:
        return None
    return extract(dict(headers))


def link_to(headers: Mapping[str, str] | None) -> list[Link]:
    found = context_of(headers)
    if found is None:
        return []
    span_context = trace.get_current_span(found).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


@contextlib.contextmanager
def staging(destination: str, message_type: str, message_id: str) -> Iterator[dict[str, str]]:
    """The ``create`` span of a message staged for ``destination``; yields its context to store."""
    if not _enabled:
        yield {}
        return
    kind, _, name = destination.partition(":")
    attributes = {
        "messaging.system": "aws_sqs" if kind == "queue" else "aws_sns",
        "messaging.operation.type": "create",
        "messaging.operation.name": "create",
        "messaging.destination.name": name,
        "messaging.message.id": message_id,
        "messaging.message.type": message_type,
    }
    with tracer.start_as_current_span(f"create {name}", kind=SpanKind.PRODUCER, attributes=attributes):
        yield carrier() | ({"tracelink": "1"} if kind == "topic" else {})


@contextlib.contextmanager
def processing(queue: str, headers: Mapping[str, str] | None, *, message_type: str, message_id: str) -> Iterator[Any]:
    """The ``process <queue>`` span of a received message: a child of the span that staged it,
    or, for one published to a topic (``tracelink``), the root of a trace of its own linked to
    the publisher's."""
    if not _enabled:
        yield None
        return
    found = context_of(headers)
    attributes = {
        "messaging.system": "aws_sqs",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": message_id,
        "messaging.message.type": message_type,
    }
    if (headers or {}).get("tracelink") == "1":
        parent, links = otel_context.Context(), link_to(headers)
    else:
        parent, links = (found if found is not None else otel_context.Context()), []
    name = f"process {queue}"
    with tracer.start_as_current_span(name, context=parent, kind=SpanKind.CONSUMER, links=links, attributes=attributes) as span:
        yield span


def resumed(span: Any) -> contextlib.AbstractContextManager[Any]:
    """``span`` (ended or not) current again, for what is logged about its message afterwards."""
    return trace.use_span(span, end_on_exit=False) if span is not None else contextlib.nullcontext()


@contextlib.contextmanager
def within(
    name: str,
    saga: Mapping[str, str] | None,
    *,
    cause: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """A span in the trace ``saga`` carries (a saga's own context), linked to ``cause`` (the
    current span when None: the request or check that led to it). For what happens to a saga
    with no causing message: a deadline, a resend, an operator's action."""
    if not _enabled:
        yield
        return
    parent = context_of(saga)
    links = link_to(cause if cause is not None else carrier())
    if parent is None:  # a saga from before tracing: a span of the current trace
        with tracer.start_as_current_span(name, attributes=attributes):
            yield
        return
    with tracer.start_as_current_span(name, context=parent, links=links, attributes=attributes):
        yield


def publishing(destination: str, headers: list[Mapping[str, str]], count: int) -> contextlib.AbstractContextManager[Any]:
    """The relay's ``send <destination>`` span for one batch, linked to every message's context."""
    if not _enabled:
        return contextlib.nullcontext()
    kind, _, name = destination.partition(":")
    links = [link for h in headers for link in link_to(h)]
    attributes = {
        "messaging.system": "aws_sqs" if kind == "queue" else "aws_sns",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send" if kind == "queue" else "publish",
        "messaging.destination.name": name,
        "messaging.batch.message_count": count,
    }
    # A root of its own: the relay's pass is no saga's child, whatever span the loop is in.
    return tracer.start_as_current_span(
        f"send {name}", context=otel_context.Context(), kind=SpanKind.PRODUCER, links=links, attributes=attributes
    )


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: ``trace_id`` and ``span_id`` on every line written inside a span."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event.setdefault("span_id", format(span_context.span_id, "016x"))
    return event
