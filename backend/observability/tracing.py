"""OpenTelemetry traces, opt-in: OTEL_EXPORTER_OTLP_ENDPOINT set means spans are exported.

Unset, nothing here is built and the request path makes no OpenTelemetry call at all (the
SDK is not even imported). Set, each chat interaction is a `chat {model}` span with the
GenAI semantic conventions' attributes plus the specialist's id and version, each upstream
attempt a child span, and an incoming W3C `traceparent` is continued. Prompt and answer
text go into spans only with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.providers.base import CompletionRequest

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)
T = TypeVar("T")


class TracingSetupError(RuntimeError):
    """Tracing was asked for but cannot run (the message says what to install)."""


class Tracing:
    """The tracer and its provider; built only when an OTLP endpoint is configured."""

    def __init__(self, provider: TracerProvider, *, capture_content: bool = False) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("backend.chat")
        self.capture_content = capture_content

    @classmethod
    def from_endpoint(
        cls, endpoint: str | None, *, service_name: str, capture_content: bool
    ) -> Tracing | None:
        """None when no endpoint is set; else spans batched to `<endpoint>/v1/traces`."""
        if not endpoint:
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise TracingSetupError(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                "pip install 'ai-portal-backend[otel]'"
            ) from exc
        exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
        return cls.with_exporter(
            exporter, service_name=service_name, capture_content=capture_content
        )

    @classmethod
    def with_exporter(
        cls, exporter: SpanExporter, *, service_name: str, capture_content: bool = False,
        batch: bool = True,
    ) -> Tracing:
        """Spans to this exporter (batched in a background thread, or one by one)."""
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
        return cls(provider, capture_content=capture_content)

    # --- the chat interaction --------------------------------------------------------
    def start_chat(
        self, *, model: str, specialist_id: str, specialist_version: int, transport: str,
        request_id: str, request: CompletionRequest,
    ) -> Span:
        """Open the interaction's span (a child of the incoming traceparent, if any)."""
        from opentelemetry.trace import SpanKind

        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "portal.specialist.id": specialist_id,
            "portal.specialist.version": specialist_version,
            "portal.transport": transport,
            "portal.request_id": request_id,
        }
        if self.capture_content:
            system = (("system", request.system),) if request.system else ()
            attributes["gen_ai.input.messages"] = _messages(
                [*system, *((m.role, m.content) for m in request.messages)]
            )
        return self.tracer.start_span(f"chat {model}", kind=SpanKind.SERVER, attributes=attributes)

    @contextmanager
    def activate(self, span: Span) -> Iterator[None]:
        """Make the interaction's span current, so the attempts become its children."""
        from opentelemetry.trace import use_span

        with use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield

    async def within(self, span: Span, run: Awaitable[T]) -> T:
        """Await `run` with the interaction's span current (its attempts become children)."""
        with self.activate(span):
            return await run

    def end_chat(
        self, span: Span, *, provider: str, response_model: str, input_tokens: int,
        output_tokens: int, finish_reason: str | None, outcome: str, output: str | None,
    ) -> None:
        """Close the span with what the interaction produced."""
        from opentelemetry.trace import Status, StatusCode

        span.set_attributes({
            "gen_ai.provider.name": provider,
            "gen_ai.response.model": response_model,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "portal.outcome": outcome,
        })
        if finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
        if output is not None and self.capture_content:
            span.set_attribute("gen_ai.output.messages", _messages([("assistant", output)]))
        if outcome != "ok":
            span.set_attribute("error.type", outcome)
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()

    @contextmanager
    def attempt(self, provider: str, model: str) -> Iterator[None]:
        """One upstream attempt, as a child span of the current interaction."""
        from opentelemetry.trace import SpanKind

        with self.tracer.start_as_current_span(
            f"chat {model}", kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
            },
        ) as span:
            try:
                yield
            except BaseException as exc:
                span.set_attribute("error.type", getattr(exc, "code", type(exc).__name__))
                raise

    def shutdown(self) -> None:
        """Export what is still batched, then stop (bounded by the SDK's own timeouts)."""
        self.provider.shutdown()


def _messages(messages: Sequence[tuple[str, str]]) -> str:
    # The GenAI conventions' message shape: role plus text parts, as a JSON string.
    return orjson.dumps(
        [{"role": role, "parts": [{"type": "text", "content": text}]} for role, text in messages]
    ).decode()


class TraceContextMiddleware:
    """Continues an incoming W3C `traceparent`; only installed when tracing is on."""

    def __init__(self, app: ASGIApp) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.app = app
        self._propagator = TraceContextTextMapPropagator()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Attach the caller's trace context for the request's duration."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from opentelemetry import context

        carrier = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope.get("headers", ())
            if key in (b"traceparent", b"tracestate")
        }
        if not carrier:
            await self.app(scope, receive, send)
            return
        token = context.attach(self._propagator.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)
