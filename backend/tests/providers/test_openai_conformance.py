"""The official `openai` SDK and our adapter, driven against the same fake, must agree.

If the fake drifted from what the SDK parses, or the adapter read a field the SDK reads
differently, these tests see it: same text, same usage, same model, same error kind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from backend.providers.base import CompletionRequest, Message, StreamEnd, TextDelta, Usage
from backend.providers.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderStreamCut,
    ProviderUnavailable,
)
from backend.providers.http import Timeouts
from backend.providers.openai import OpenAIProvider
from backend.tests.fakes import openai_fake
from backend.tests.fakes.openai_fake import API_KEY
from backend.tests.fakes.script import Script

REQUEST = CompletionRequest(
    model="gpt-4o-mini",
    system="Answer briefly.",
    messages=(Message("user", "hi"), Message("assistant", "hello"), Message("user", "and?")),
)
SDK_MESSAGES: list[Any] = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "and?"},
]
SCRIPTS = {
    "default": Script(),
    "dated-model-and-cache": Script(
        chunks=["Über", "all ", "😀"], model="gpt-4o-mini-2024-07-18",
        input_tokens=2048, output_tokens=3, cached_input_tokens=1024,
    ),
    "no-usage": Script(omit_usage=True),
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def adapter(session: aiohttp.ClientSession, url: str, key: str = API_KEY) -> OpenAIProvider:
    return OpenAIProvider(
        session, base_url=url, api_key=key, timeouts=Timeouts(connect=2.0, total=10.0)
    )


def sdk(url: str, key: str = API_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=url, max_retries=0)


def sdk_usage(usage: Any) -> Usage | None:
    """The SDK's CompletionUsage in our terms, for comparison."""
    if usage is None:
        return None
    details = usage.prompt_tokens_details
    output = usage.completion_tokens_details
    return Usage(
        input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens,
        cached_input_tokens=details.cached_tokens if details else None,
        reasoning_tokens=output.reasoning_tokens if output else None,
    )


async def sdk_stream(client: openai.AsyncOpenAI) -> tuple[str, Usage | None, str]:
    """Text, usage and model as the SDK's stream delivers them, with include_usage."""
    stream = await client.chat.completions.create(
        model=REQUEST.model, messages=SDK_MESSAGES, stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, model = "", None, ""
    async for chunk in stream:
        model = chunk.model
        for choice in chunk.choices:
            text += choice.delta.content or ""
        if chunk.usage is not None:
            usage = sdk_usage(chunk.usage)
    return text, usage, model


async def adapter_stream(p: OpenAIProvider) -> tuple[str, Usage | None, str]:
    text, end = "", None
    async for event in p.stream(REQUEST):
        if isinstance(event, TextDelta):
            text += event.text
        else:
            end = event
    assert isinstance(end, StreamEnd)
    return text, end.usage, end.model


@pytest.mark.parametrize("name", list(SCRIPTS))
async def test_non_streaming_agrees(session: aiohttp.ClientSession, name: str) -> None:
    async with openai_fake.start(SCRIPTS[name]) as (url, state), sdk(url) as client:
        theirs = await client.chat.completions.create(model=REQUEST.model, messages=SDK_MESSAGES)
        ours = await adapter(session, url).complete(REQUEST)
    assert ours.text == theirs.choices[0].message.content
    assert ours.usage == sdk_usage(theirs.usage)
    assert ours.model == theirs.model
    assert ours.finish_reason == theirs.choices[0].finish_reason
    # Both sent the same conversation, in the same order.
    assert state.requests[0].json["messages"] == state.requests[1].json["messages"]


@pytest.mark.parametrize("name", list(SCRIPTS))
async def test_streaming_agrees(session: aiohttp.ClientSession, name: str) -> None:
    async with openai_fake.start(SCRIPTS[name]) as (url, state), sdk(url) as client:
        theirs = await sdk_stream(client)
        ours = await adapter_stream(adapter(session, url))
    assert ours == theirs
    assert state.requests[1].json["stream_options"] == state.requests[0].json["stream_options"]
    if not SCRIPTS[name].omit_usage:
        assert ours[1] is not None  # the comparison above was not None == None


ERROR_CASES = [
    pytest.param(Script(error_status=401), openai.AuthenticationError, ProviderAuthError,
                 id="401-scripted"),
    pytest.param(Script(error_status=429, retry_after="3"), openai.RateLimitError,
                 ProviderRateLimited, id="429"),
    pytest.param(Script(error_status=500), openai.InternalServerError, ProviderUnavailable,
                 id="500"),
    pytest.param(Script(error_status=503), openai.InternalServerError, ProviderUnavailable,
                 id="503"),
    pytest.param(Script(error_status=400), openai.BadRequestError, ProviderBadRequest, id="400"),
]


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(("script", "sdk_error", "our_error"), ERROR_CASES)
async def test_error_kinds_agree(
    session: aiohttp.ClientSession, streaming: bool, script: Script,
    sdk_error: type[openai.APIStatusError], our_error: type[ProviderError],
) -> None:
    async with openai_fake.start(script) as (url, _), sdk(url) as client:
        with pytest.raises(sdk_error) as theirs:
            if streaming:
                await sdk_stream(client)
            else:
                await client.chat.completions.create(model=REQUEST.model, messages=SDK_MESSAGES)
        with pytest.raises(our_error) as ours:
            if streaming:
                await adapter_stream(adapter(session, url))
            else:
                await adapter(session, url).complete(REQUEST)
    assert ours.value.status == theirs.value.status_code
    if isinstance(ours.value, ProviderRateLimited):
        assert ours.value.retry_after == 3.0


async def test_wrong_key_agrees(session: aiohttp.ClientSession) -> None:
    wrong = "sk-proj-0123456789abcdefWXYZ"
    async with openai_fake.start() as (url, _), sdk(url, wrong) as client:
        with pytest.raises(openai.AuthenticationError) as theirs:
            await client.chat.completions.create(model=REQUEST.model, messages=SDK_MESSAGES)
        with pytest.raises(ProviderAuthError) as ours:
            await adapter(session, url, wrong).complete(REQUEST)
    # The SDK surfaces OpenAI's masked echo of the key; we deliberately do not.
    assert theirs.value.code == "invalid_api_key"
    assert openai_fake.mask_key(wrong) in str(theirs.value)
    assert openai_fake.mask_key(wrong) not in str(ours.value)


async def test_in_stream_error_agrees(session: aiohttp.ClientSession) -> None:
    script = Script(stream_error_after=1, error_message="The server had an error")
    async with openai_fake.start(script) as (url, _), sdk(url) as client:
        with pytest.raises(openai.APIError) as theirs:
            await sdk_stream(client)
        with pytest.raises(ProviderUnavailable) as ours:
            await adapter_stream(adapter(session, url))
    # A plain APIError: the status was 200, so it is not an APIStatusError subclass.
    assert type(theirs.value) is openai.APIError
    assert theirs.value.message == "The server had an error"
    assert "The server had an error" in str(ours.value)


async def test_cut_stream_agrees(session: aiohttp.ClientSession) -> None:
    async with openai_fake.start(Script(cut_after_chunks=1)) as (url, _), sdk(url) as client:
        with pytest.raises(openai.APIConnectionError):
            await sdk_stream(client)
        with pytest.raises(ProviderStreamCut):
            await adapter_stream(adapter(session, url))


async def test_missing_done_is_where_we_are_stricter(session: aiohttp.ClientSession) -> None:
    """The SDK ends quietly without [DONE]; we refuse to call such a stream complete."""
    async with openai_fake.start(Script(omit_terminal=True)) as (url, _), sdk(url) as client:
        text, usage, _model = await sdk_stream(client)
        with pytest.raises(ProviderStreamCut):
            await adapter_stream(adapter(session, url))
    assert text == "Hello from the fake" and usage == Usage(11, 7, 0, reasoning_tokens=0)
