"""A trace viewer for this machine: receives the services' spans over OTLP/HTTP and draws a
trace as a waterfall. ``make up TRACING=1`` starts it on 127.0.0.1:4318 and points every
service at it; the console links each saga to its trace here.

Why our own: the usual viewers (Jaeger, Zipkin, the OpenTelemetry Collector's) are Go or Java
programs shipped as binaries or images, and this machine reaches neither Docker nor GitHub;
this is the OTLP receiver (protobuf, from ``opentelemetry-proto``) and one HTML page, enough to
follow a saga across the six services. On AWS the spans go to CloudWatch/X-Ray instead (infra/).

``GET /`` lists recent traces; ``GET /trace/<trace_id>`` draws one; ``GET /api/traces/<trace_id>``
is its spans as JSON (what the tests read). Spans are also appended to ``--file`` (JSON lines).
"""

from __future__ import annotations

import html
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import typer
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

KEEP = 2000
"""Traces kept in memory, the most recent."""
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def spans_of(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """The spans of an OTLP export as plain dicts (ids in hex)."""
    found = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex() or None,
                        "name": span.name,
                        "kind": KINDS.get(span.kind, str(span.kind)),
                        "service": resource.get("service.name", "?"),
                        "start_ns": span.start_time_unix_nano,
                        "end_ns": span.end_time_unix_nano,
                        "attributes": {a.key: _value(a.value) for a in span.attributes},
                        "links": [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()} for link in span.links],
                        "status": span.status.code,
                    }
                )
    return found


class Store:
    def __init__(self, file: Path | None) -> None:
        self.traces: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.lock = threading.Lock()
        self.file = file

    def add(self, spans: list[dict[str, Any]]) -> None:
        with self.lock:
            for span in spans:
                self.traces.setdefault(span["trace_id"], []).append(span)
                self.traces.move_to_end(span["trace_id"])
            while len(self.traces) > KEEP:
                self.traces.popitem(last=False)
            if self.file:
                with self.file.open("a") as out:
                    out.writelines(json.dumps(span) + "\n" for span in spans)


def app(store: Store) -> FastAPI:
    viewer = FastAPI(title="traces")

    @viewer.post("/v1/traces")
    async def receive(request: Request) -> Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        store.add(spans_of(export))
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    @viewer.get("/api/traces/{trace_id}")
    def trace_json(trace_id: str) -> list[dict[str, Any]]:
        spans = store.traces.get(trace_id)
        if spans is None:
            raise HTTPException(404, f"no trace {trace_id}")
        return sorted(spans, key=lambda s: s["start_ns"])

    @viewer.get("/trace/{trace_id}", response_class=HTMLResponse)
    def trace_page(trace_id: str) -> str:
        return waterfall(trace_id, trace_json(trace_id))

    @viewer.get("/", response_class=HTMLResponse)
    def index() -> str:
        rows = []
        for trace_id, spans in reversed(store.traces.items()):
            root = min(spans, key=lambda s: s["start_ns"])
            rows.append(
                f'<tr><td><a href="/trace/{trace_id}">{trace_id}</a></td><td>{html.escape(root["service"])}</td>'
                f"<td>{html.escape(root['name'])}</td><td>{len(spans)}</td></tr>"
            )
        header = "<tr><th>trace</th><th>service</th><th>first span</th><th>spans</th></tr>"
        return _page("Traces", f"<table>{header}{''.join(rows)}</table>")

    return viewer


def waterfall(trace_id: str, spans: list[dict[str, Any]]) -> str:
    """One row per span, indented under its parent, a bar for its time within the trace."""
    start = min(s["start_ns"] for s in spans)
    end = max(s["end_ns"] for s in spans) or start + 1
    children: dict[str | None, list[dict[str, Any]]] = {}
    ids = {s["span_id"] for s in spans}
    for span in spans:
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(span)
    rows: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start_ns"]):
            left = 100 * (span["start_ns"] - start) / (end - start)
            width = max(0.3, 100 * (span["end_ns"] - span["start_ns"]) / (end - start))
            millis = (span["end_ns"] - span["start_ns"]) / 1e6
            links = ", ".join(f'<a href="/trace/{link["trace_id"]}">link</a>' for link in span["links"])
            rows.append(
                f'<tr><td style="padding-left:{depth}em">{html.escape(span["name"])} <small>{html.escape(span["service"])} '
                f"{span['kind']} {links}</small></td><td class=t>{millis:.1f} ms</td>"
                f'<td class=bar><div style="margin-left:{left:.2f}%;width:{width:.2f}%"></div></td></tr>'
            )
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    total = (end - start) / 1e6
    return _page(f"Trace {trace_id}", f"<p>{len(spans)} spans, {total:.0f} ms</p><table>{''.join(rows)}</table>")


def _page(title: str, body: str) -> str:
    style = (
        "body{font:13px sans-serif;margin:1em}table{border-collapse:collapse;width:100%}td,th{padding:2px 6px;"
        "border-bottom:1px solid #eee;text-align:left}td.t{width:6em;text-align:right}td.bar{width:45%}"
        "td.bar div{background:#4a7;height:10px}small{color:#777}"
    )
    return f"<!doctype html><title>{html.escape(title)}</title><style>{style}</style><h1>{html.escape(title)}</h1>{body}"


def main(
    port: int = typer.Option(4318, help="port on 127.0.0.1 (4318 is OTLP/HTTP's own)"),
    file: Path = typer.Option(None, help="also append every span here, a JSON object per line"),
) -> None:
    """Receive OTLP/HTTP spans on 127.0.0.1 and draw traces."""
    import uvicorn

    uvicorn.run(app(Store(file)), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    typer.run(main)
