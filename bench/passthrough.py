"""The baseline: a minimal FastAPI relay of the portal's OpenAI request over plain aiohttp.

No limiter, no records, no validation: what relaying costs at all. Takes the portal's
request body, sends the same Chat Completions request; `/chat/stream` passes bytes through.
Configured by OPENAI_BASE_URL, OPENAI_API_KEY and PASSTHROUGH_SPECIALIST (JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

URL = os.environ["OPENAI_BASE_URL"].rstrip("/") + "/chat/completions"
HEADERS = {
    "Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}",
    "Content-Type": "application/json",
}
SPEC = json.loads(os.environ["PASSTHROUGH_SPECIALIST"])


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One shared session, as the portal has."""
    app.state.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await app.state.session.close()


app = FastAPI(lifespan=lifespan)


def upstream_body(raw: bytes, *, stream: bool) -> bytes:
    """The Chat Completions body the portal would send for this chat request."""
    chat = orjson.loads(raw)
    messages = [{"role": "system", "content": SPEC["system_prompt"]}, *chat["conversation_history"]]
    messages.append({"role": "user", "content": chat["message"]})
    body = {"model": SPEC["model"], "messages": messages, "max_tokens": SPEC["max_output_tokens"],
            "temperature": SPEC["temperature"]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return orjson.dumps(body)


@app.post("/chat/send")
async def send(request: Request) -> Response:
    """Relay one non-streaming call; answer with the text and usage."""
    body = upstream_body(await request.body(), stream=False)
    async with request.app.state.session.post(URL, data=body, headers=HEADERS) as upstream:
        data = orjson.loads(await upstream.read())
    answer = {"content": data["choices"][0]["message"]["content"], "usage": data.get("usage")}
    return Response(orjson.dumps(answer), upstream.status, media_type="application/json")


@app.post("/chat/stream")
async def stream(request: Request) -> StreamingResponse:
    """Relay the upstream SSE bytes as they arrive."""
    body = upstream_body(await request.body(), stream=True)
    upstream = await request.app.state.session.post(URL, data=body, headers=HEADERS)
    return relay(upstream)


def v1_body(raw: bytes) -> tuple[bytes, bool]:
    """The Chat Completions body for an OpenAI-shaped request naming the specialist."""
    chat = orjson.loads(raw)
    messages = [{"role": "system", "content": SPEC["system_prompt"]}, *chat["messages"]]
    body = {**chat, "model": SPEC["model"], "messages": messages,
            "max_tokens": SPEC["max_output_tokens"], "temperature": SPEC["temperature"]}
    return orjson.dumps(body), bool(chat.get("stream"))


@app.post("/v1/chat/completions")
async def completions(request: Request) -> Response:
    """Relay an OpenAI-shaped call: the upstream's bytes back, streamed or whole."""
    body, streaming = v1_body(await request.body())
    upstream = await request.app.state.session.post(URL, data=body, headers=HEADERS)
    if not streaming:
        async with upstream:
            return Response(await upstream.read(), upstream.status,
                            media_type="application/json")
    return relay(upstream)


def relay(upstream: aiohttp.ClientResponse) -> StreamingResponse:
    """The upstream SSE bytes, passed on as they arrive."""

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
        finally:
            upstream.release()

    return StreamingResponse(chunks(), media_type="text/event-stream")


@app.get("/health")
async def health() -> dict[str, str]:
    """Readiness for the bench."""
    return {"status": "ok"}
