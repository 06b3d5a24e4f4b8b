"""The real OpenAIProvider against the fake Chat Completions server: reading and sending.

Errors and stream faults are in test_openai_errors.py, which reuses the helpers here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from backend.providers.base import (
    Completion,
    CompletionRequest,
    Message,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
)
from backend.providers.errors import ProviderUnavailable
from backend.providers.http import Timeouts
from backend.providers.openai import OpenAIProvider
from backend.tests.fakes import openai_fake
from backend.tests.fakes.openai_fake import API_KEY
from backend.tests.fakes.script import Script

TIMEOUTS = Timeouts(connect=2.0, total=10.0, idle=5.0)
REQUEST = CompletionRequest(
    model="gpt-4o",
    system="You are terse.",
    messages=(
        Message("user", "first question"),
        Message("assistant", "first answer"),
        Message("user", "second question"),
    ),
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def provider(
    session: aiohttp.ClientSession, base_url: str, *, api_key: str | None = API_KEY,
    timeouts: Timeouts = TIMEOUTS, name: str = "openai",
) -> OpenAIProvider:
    return OpenAIProvider(session, base_url=base_url, api_key=api_key, timeouts=timeouts, name=name)


async def collect(p: OpenAIProvider, request: CompletionRequest = REQUEST) -> list[StreamEvent]:
    return [event async for event in p.stream(request)]


async def run(p: OpenAIProvider, streaming: bool, request: CompletionRequest = REQUEST) -> None:
    """Drive one call in either mode to completion, for the error tests."""
    if streaming:
        await collect(p, request)
    else:
        await p.complete(request)


async def consume(p: OpenAIProvider, seen: list[StreamEvent]) -> None:
    """Collect events into `seen` so a test can check what arrived before a failure."""
    async for event in p.stream(REQUEST):
        seen.append(event)


BOTH_MODES = pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])


# --- success: text, usage, model --------------------------------------------------------


async def test_complete_reads_text_usage_and_model(session: aiohttp.ClientSession) -> None:
    script = Script(model="gpt-4o-2024-08-06", input_tokens=120, output_tokens=9,
                    cached_input_tokens=64)
    async with openai_fake.start(script) as (url, state):
        result = await provider(session, url).complete(REQUEST)
    assert result == Completion(
        text="Hello from the fake", model="gpt-4o-2024-08-06",
        usage=Usage(input_tokens=120, output_tokens=9, cached_input_tokens=64,
                    reasoning_tokens=0),
        finish_reason="stop", native_finish="stop",
    )
    assert "stream" not in state.requests[0].json


async def test_stream_relays_each_delta_then_ends_with_usage(
    session: aiohttp.ClientSession,
) -> None:
    script = Script(chunks=["Bon", "jour", " à vous"], model="gpt-4o-2024-08-06",
                    input_tokens=50, output_tokens=4, cached_input_tokens=32)
    async with openai_fake.start(script) as (url, _):
        events = await collect(provider(session, url))
    assert events == [
        TextDelta("Bon"), TextDelta("jour"), TextDelta(" à vous"),
        StreamEnd(
            model="gpt-4o-2024-08-06",
            usage=Usage(input_tokens=50, output_tokens=4, cached_input_tokens=32,
                        reasoning_tokens=0),
            finish_reason="stop", native_finish="stop",
        ),
    ]


async def test_model_is_the_requested_one_when_the_server_echoes_it(
    session: aiohttp.ClientSession,
) -> None:
    async with openai_fake.start() as (url, _):
        p = provider(session, url)
        completion = await p.complete(REQUEST)
        end = (await collect(p))[-1]
    assert completion.model == "gpt-4o"
    assert isinstance(end, StreamEnd) and end.model == "gpt-4o"


async def test_stream_usage_exists_only_because_we_ask_for_it(
    session: aiohttp.ClientSession,
) -> None:
    """OpenAI sends the usage chunk only for `include_usage`; the adapter must set it."""
    async with openai_fake.start() as (url, state):
        end = (await collect(provider(session, url)))[-1]
        # The same request without stream_options, posted by hand, gets no usage at all.
        bare = {**state.requests[0].json}
        del bare["stream_options"]
        async with session.post(
            f"{url}/chat/completions", data=orjson.dumps(bare),
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as response:
            raw = await response.read()
    assert state.requests[0].json["stream"] is True
    assert state.requests[0].json["stream_options"] == {"include_usage": True}
    assert isinstance(end, StreamEnd) and end.usage == Usage(11, 7, 0, reasoning_tokens=0)
    assert b'"usage"' not in raw and raw.endswith(b"data: [DONE]\n\n")


async def test_server_without_usage_gives_none_not_zero(session: aiohttp.ClientSession) -> None:
    async with openai_fake.start(Script(omit_usage=True)) as (url, _):
        p = provider(session, url)
        completion = await p.complete(REQUEST)
        end = (await collect(p))[-1]
    assert completion.usage is None
    assert isinstance(end, StreamEnd) and end.usage is None and end.finish_reason == "stop"


# --- what reached upstream ---------------------------------------------------------------


@BOTH_MODES
async def test_request_on_the_wire(session: aiohttp.ClientSession, streaming: bool) -> None:
    async with openai_fake.start() as (url, state):
        await run(provider(session, url), streaming)
    (sent,) = state.requests
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json["model"] == "gpt-4o"
    assert sent.json["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]


async def test_no_system_prompt_sends_no_system_message(session: aiohttp.ClientSession) -> None:
    request = CompletionRequest(model="gpt-4o", messages=(Message("user", "hi"),))
    async with openai_fake.start() as (url, state):
        await provider(session, url).complete(request)
    assert state.requests[0].json["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("model", ["o3-mini", "o4-mini", "gpt-5", "gpt-5-mini"])
@BOTH_MODES
async def test_reasoning_models_get_max_completion_tokens_and_no_temperature(
    session: aiohttp.ClientSession, model: str, streaming: bool,
) -> None:
    request = CompletionRequest(
        model=model, messages=(Message("user", "hi"),), temperature=0.3, max_output_tokens=256
    )
    async with openai_fake.start() as (url, state):
        await run(provider(session, url), streaming, request)
    body = state.requests[0].json
    assert body["max_completion_tokens"] == 256
    assert "max_tokens" not in body and "temperature" not in body


@BOTH_MODES
async def test_chat_models_get_max_tokens_and_temperature(
    session: aiohttp.ClientSession, streaming: bool,
) -> None:
    request = CompletionRequest(
        model="gpt-4o", messages=(Message("user", "hi"),), temperature=0.3, max_output_tokens=256
    )
    async with openai_fake.start() as (url, state):
        await run(provider(session, url), streaming, request)
    body = state.requests[0].json
    assert (body["max_tokens"], body["temperature"]) == (256, 0.3)
    assert "max_completion_tokens" not in body


async def test_fake_refuses_max_tokens_for_reasoning_models_like_openai(
    session: aiohttp.ClientSession,
) -> None:
    """Proves the reasoning tests above would fail if the adapter sent `max_tokens`."""
    body = {"model": "o3-mini", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 10}
    async with openai_fake.start() as (url, _):
        async with session.post(
            f"{url}/chat/completions", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as response:
            status, error = response.status, (await response.json())["error"]
    assert status == 400
    assert (error["param"], error["code"]) == ("max_tokens", "unsupported_parameter")


@BOTH_MODES
async def test_compatible_server_without_key_gets_no_authorization_header(
    session: aiohttp.ClientSession, streaming: bool,
) -> None:
    async with openai_fake.start(require_auth=False) as (url, state):
        p = provider(session, url, api_key=None, name="openai_compatible")
        await run(p, streaming)
    assert p.name == "openai_compatible"
    assert "authorization" not in state.requests[0].headers


async def test_compatible_errors_name_the_compatible_provider(
    session: aiohttp.ClientSession,
) -> None:
    async with openai_fake.start(Script(error_status=500), require_auth=False) as (url, _):
        p = provider(session, url, api_key=None, name="openai_compatible")
        with pytest.raises(ProviderUnavailable) as caught:
            await p.complete(REQUEST)
    assert caught.value.provider == "openai_compatible"
    assert str(caught.value).startswith("openai_compatible returned HTTP 500")
