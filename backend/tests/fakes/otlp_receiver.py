"""A local OTLP/HTTP trace receiver: what a collector would get, decoded from protobuf."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from backend.tests.fakes.server import serve


@dataclass
class Received:
    """Every span exported so far, as plain dicts (ids as hex, attributes flattened)."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0


def _value(value: dict[str, Any]) -> Any:
    kind, raw = next(iter(value.items()))
    if kind == "intValue":
        return int(raw)
    if kind == "arrayValue":
        return [_value(v) for v in raw.get("values", [])]
    return raw


def _span(span: Any, resource: dict[str, Any]) -> dict[str, Any]:
    data = MessageToDict(span)
    return {
        "name": span.name,
        "kind": span.kind,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "status": span.status.code,
        "attributes": {a["key"]: _value(a["value"]) for a in data.get("attributes", [])},
        "resource": resource,
    }


@asynccontextmanager
async def start() -> AsyncIterator[tuple[str, Received]]:
    """Run the receiver; yield its base URL (what OTEL_EXPORTER_OTLP_ENDPOINT names)."""
    received = Received()

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.posts += 1
        for resource_spans in message.resource_spans:
            resource = {
                a["key"]: _value(a["value"])
                for a in MessageToDict(resource_spans.resource).get("attributes", [])
            }
            for scope in resource_spans.scope_spans:
                received.spans.extend(_span(s, resource) for s in scope.spans)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    async with serve(app) as url:
        yield url, received
