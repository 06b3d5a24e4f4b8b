"""Traces through a local OTLP receiver: the chat span and its attributes, a child span per
upstream attempt, the caller's traceparent continued, no text unless asked; no tracer, no
middleware, no span when the endpoint is unset."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx_sse import aconnect_sse
from opentelemetry import metrics, trace

from backend.main import create_app
from backend.observability.tracing import TraceContextMiddleware
from backend.tests.chat.conftest import MODELS, SPECIALISTS
from backend.tests.fakes import otlp_receiver
from backend.tests.fakes.script import Script
from backend.tests.observability.conftest import Portal
from backend.tests.support import make_settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SECRET_QUESTION = "what is the launch code for project bluebird"
SERVER, CLIENT, ERROR = 2, 3, 2  # OTLP's SpanKind and StatusCode numbers


@pytest.fixture(autouse=True)
def quick_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export batches every 50 ms instead of every 5 s."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")


async def spans_named(received: otlp_receiver.Received, count: int) -> list[dict[str, Any]]:
    """The spans once `count` have arrived (the exporter batches in the background)."""
    deadline = time.monotonic() + 10
    while len(received.spans) < count:
        assert time.monotonic() < deadline, received.spans
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # and no more than that
    return received.spans


BODY = {"specialist_id": SPECIALISTS["openai"], "message": SECRET_QUESTION}


async def test_a_chat_is_a_span_with_genai_attributes_and_one_child_per_attempt(
    portal_factory: Any,
) -> None:
    async with otlp_receiver.start() as (endpoint, received):
        portal: Portal = await portal_factory(otel_exporter_otlp_endpoint=endpoint)
        portal.fakes["openai"].script = Script(error_status=503, fail_times=1)
        body = BODY
        traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
        sent = await portal.client.post(
            "/chat/send", json=body, headers={"traceparent": traceparent}
        )
        assert sent.status_code == 200
        async with aconnect_sse(portal.client, "POST", "/chat/stream", json=body) as source:
            _ = [event async for event in source.aiter_sse()]
        spans = await spans_named(received, 5)  # 2 chats, 3 attempts

    chats = [s for s in spans if s["kind"] == SERVER]
    attempts = [s for s in spans if s["kind"] == CLIENT]
    assert len(chats) == 2 and len(attempts) == 3
    send = next(s for s in chats if s["attributes"]["portal.transport"] == "send")
    stream = next(s for s in chats if s["attributes"]["portal.transport"] == "stream")
    # The caller's trace is continued; the stream, sent without one, starts its own.
    assert (send["trace_id"], send["parent_span_id"]) == (TRACE_ID, PARENT_ID)
    assert stream["trace_id"] != TRACE_ID and stream["parent_span_id"] == ""
    for span in chats:
        assert span["name"] == f"chat {MODELS['openai']}"
        attributes = span["attributes"]
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.request.model"] == MODELS["openai"]
        assert attributes["gen_ai.response.model"] == MODELS["openai"]
        assert attributes["gen_ai.usage.input_tokens"] == 11
        assert attributes["gen_ai.usage.output_tokens"] == 7
        assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
        assert attributes["portal.specialist.id"] == SPECIALISTS["openai"]
        assert attributes["portal.specialist.version"] == 1
        assert span["resource"]["service.name"] == "ai-portal-backend"
    # The send's first attempt failed (503) and was retried: two children, one an error.
    children = sorted(
        (a for a in attempts if a["parent_span_id"] == send["span_id"]),
        key=lambda a: a["status"], reverse=True,
    )
    assert [c["status"] for c in children] == [ERROR, 0]
    assert children[0]["attributes"]["error.type"] == "upstream_unavailable"
    assert all(c["trace_id"] == TRACE_ID for c in children)
    assert [a["parent_span_id"] for a in attempts if a not in children] == [stream["span_id"]]
    assert SECRET_QUESTION not in str(spans) and "fake" not in str(
        [s["attributes"] for s in spans]
    )


async def test_message_content_only_when_enabled_and_failures_are_errors(
    portal_factory: Any,
) -> None:
    async with otlp_receiver.start() as (endpoint, received):
        capture = {"otel_instrumentation_genai_capture_message_content": True}
        portal: Portal = await portal_factory(otel_exporter_otlp_endpoint=endpoint, **capture)
        assert (await portal.client.post("/chat/send", json=BODY)).status_code == 200
        portal.fakes["openai"].script = Script(error_status=400)  # not retried
        assert (await portal.client.post("/chat/send", json=BODY)).status_code == 502
        spans = await spans_named(received, 4)
    ok, failed = sorted(
        (s for s in spans if s["kind"] == SERVER), key=lambda s: s["status"]
    )
    assert SECRET_QUESTION in ok["attributes"]["gen_ai.input.messages"]
    assert "Hello from the fake" in ok["attributes"]["gen_ai.output.messages"]
    assert failed["status"] == ERROR
    assert failed["attributes"]["error.type"] == "upstream_error"


async def test_unset_endpoint_builds_no_tracing_at_all(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    assert all(m.cls is not TraceContextMiddleware for m in app.user_middleware)
    async with app.router.lifespan_context(app):
        services = app.state.services
        assert services.tracing is None and services.chat.tracing is None
        assert services.chat._resilience._tracing is None


def test_the_framework_adds_no_telemetry_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spans and metrics are the portal's own: FastAPI's native telemetry stays off, so a
    request never asks OpenTelemetry for a global provider (which would also let a provider
    set up by something else in the process double every request's span)."""
    asked: list[str] = []
    for module, name in ((trace, "get_tracer_provider"), (metrics, "get_meter_provider")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda real=real, name=name: asked.append(name) or real())
    with TestClient(create_app(make_settings(tmp_path))) as client:
        asked.clear()  # start-up may look; requests must not
        for _ in range(3):
            assert client.get("/health").status_code == 200
            assert client.post("/chat/send", json={}).status_code == 422
    assert asked == []
