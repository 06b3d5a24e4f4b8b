"""The OpenAI-compatible API: POST /v1/chat/completions and GET /v1/models.

An OpenAI client (the official SDKs, LangChain, chat UIs) uses the portal by pointing its
base URL at `<portal>/v1`; `model` is a specialist id or an alias from MODEL_ALIASES.
The same chat service, limits, rate limiter and usage records apply as on /chat; errors
come back in OpenAI's shape (see `backend/openai_api/errors.py`). The API key is the
caller's credential under AUTH_MODE=jwt or header (a personal API key or a JWT); under
AUTH_MODE=none any key is accepted, as before (docs/auth.md).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from backend.api.deps import (
    ChatCallDep,
    IdentityDep,
    RateLimitedRoute,
    Services,
    ServicesDep,
    body_field,
)
from backend.auth.policy import may_use
from backend.chat.sse import SSEResponse
from backend.openai_api.models import ModelNotFound, model_list, model_object, resolve
from backend.openai_api.responses import ChunkWriter, chunk_frames, completion_body
from backend.openai_api.schemas import ChatCompletionRequest, to_chat_request
from backend.resilience.disconnect import unless_disconnected


async def _specialist_for_model(request: Request, services: Services) -> str | None:
    model = await body_field(request, "model")
    if model is None:
        return None
    try:
        return str(resolve(model, services.settings.model_aliases, services.specialists).id)
    except ModelNotFound:
        return None


class CompletionsRoute(RateLimitedRoute):
    """Takes the token before FastAPI reads the body, like /chat does, so a malformed
    request is limited too and its 400 carries the X-RateLimit-* headers; the specialist
    is the one `model` names."""

    specialist_of = staticmethod(_specialist_for_model)
    transport = "v1"


router = APIRouter(prefix="/v1", tags=["openai-compatible"])
# A router of its own for its own route class, included by the app beside `router`.
completions = APIRouter(
    prefix="/v1", tags=["openai-compatible"], route_class=CompletionsRoute
)

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"description": text}
    for status, text in (
        (400, "Invalid, unparseable or unsupported request (OpenAI error shape)"),
        (404, "Unknown model: neither a specialist id nor an alias (`model_not_found`)"),
        (408, "The body did not arrive within BODY_READ_TIMEOUT_SECONDS"),
        (413, "Body over MAX_REQUEST_BYTES"),
        (415, "Content-Type is not application/json"),
        (429, "Rate limit exceeded (`rate_limit_exceeded`, see Retry-After)"),
        (502, "The provider failed or rejected the call"),
        (503, "Provider not configured, unavailable or rate limited"),
        (504, "The provider timed out"),
    )
}


@completions.post(
    "/chat/completions",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}, **_ERRORS},
    response_class=Response,
)
async def chat_completions(
    body: ChatCompletionRequest, call: ChatCallDep, request: Request
) -> Response:
    """Answer as OpenAI's Chat Completions would, with the specialist named by `model`."""
    services, context = call.services, call.context
    specialist = resolve(body.model, services.settings.model_aliases, services.specialists)
    chat = services.chat.prepare(
        to_chat_request(body, specialist_id=str(specialist.id)), context=context
    )
    created = int(time.time())
    # Until the answer starts, a client that leaves cancels the upstream call (and retries).
    if not body.stream:
        answer = await unless_disconnected(request.receive, services.chat.send(chat))
        content = orjson.dumps(completion_body(answer, model=body.model, created=created))
        return Response(content, media_type="application/json")
    opened = await unless_disconnected(request.receive, services.chat.open_stream(chat))
    writer = ChunkWriter(
        request_id=context.request_id, created=created, model=body.model,
        include_usage=body.include_usage,
    )
    # Keep-alive comments are SSE comment lines, which OpenAI's SDKs skip.
    return SSEResponse(
        chunk_frames(opened, writer), keepalive=services.settings.sse_keepalive_seconds
    )


@router.get("/models")
async def list_models(services: ServicesDep, identity: IdentityDep) -> dict[str, Any]:
    """Every enabled specialist the caller may use (by id) and its aliases, as OpenAI's list."""
    return model_list(
        services.settings.model_aliases, services.specialists, lambda s: may_use(identity, s)
    )


@router.get("/models/{model:path}", responses={404: _ERRORS[404]})
async def retrieve_model(
    model: str, services: ServicesDep, identity: IdentityDep
) -> dict[str, Any]:
    """One model of the list; 404 `model_not_found` for any other name."""
    specialist = resolve(model, services.settings.model_aliases, services.specialists)
    if not may_use(identity, specialist):
        raise ModelNotFound(model)
    return model_object(model, specialist)


