"""The official google-genai SDK and our adapter, driven against the same Gemini fake.

If the SDK (Google's own reading of the wire format) and GoogleProvider read the same
text, usage and error kinds from the fake, the fake is faithful and the adapter agrees
with Google's client. The SDK gets `HttpRetryOptions(attempts=1)`: its tenacity policy
then stops after one attempt, and setting retry options also turns off its implicit
aiohttp reconnect (_api_client.py, `_async_request_once`). It runs on an aiohttp session
we make with `trust_env=False`, so no proxy variable can send it elsewhere; every call is
counted at the fake, and the conftest guard refuses any address but 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types
from google.genai.client import AsyncClient

from backend.providers.base import CompletionRequest, Message, StreamEnd, TextDelta, Usage
from backend.providers.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderStreamCut,
    ProviderTimeout,
    ProviderUnavailable,
)
from backend.providers.google import GoogleProvider
from backend.providers.http import Timeouts
from backend.tests.fakes.google_fake import API_KEY, GoogleScript, start
from backend.tests.fakes.script import FakeState, Script

MODEL = "gemini-2.5-flash"
OURS = CompletionRequest(
    model=MODEL,
    messages=(Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Why?")),
    system="Answer briefly.",
    temperature=0.3,
    max_output_tokens=64,
)
SDK_CONTENTS = [
    types.Content(role="user", parts=[types.Part(text="Hi")]),
    types.Content(role="model", parts=[types.Part(text="Hello!")]),
    types.Content(role="user", parts=[types.Part(text="Why?")]),
]
SDK_CONFIG = types.GenerateContentConfig(
    system_instruction="Answer briefly.", temperature=0.3, max_output_tokens=64
)
WRONG_KEY = "AIzaSyD-wrongwrongwrongwrongwrongwrong"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@asynccontextmanager
async def sdk_client(base_url: str, key: str = API_KEY) -> AsyncIterator[AsyncClient]:
    """An SDK client on its own aiohttp session (no proxy from the environment), closed after."""
    assert base_url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession(trust_env=False) as transport:
        options = types.HttpOptions(
            base_url=base_url, api_version="v1beta", aiohttp_client=transport,
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        async with genai.Client(api_key=key, vertexai=False, http_options=options).aio as sdk:
            yield sdk


def ours(session: aiohttp.ClientSession, base_url: str, key: str = API_KEY) -> GoogleProvider:
    """An adapter pointed at the fake."""
    return GoogleProvider(
        session, base_url=base_url, api_key=key, api_version="v1beta",
        timeouts=Timeouts(connect=2.0, total=10.0),
    )


def sdk_usage(meta: types.GenerateContentResponseUsageMetadata | None) -> Usage | None:
    """The SDK's parsed counts, combined by the rule GoogleProvider documents."""
    if meta is None:
        return None
    return Usage(
        input_tokens=(meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0),
        output_tokens=(meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0),
        cached_input_tokens=meta.cached_content_token_count or 0,
        reasoning_tokens=meta.thoughts_token_count,
    )


SUCCESS_SCRIPTS = [
    Script(),
    Script(cached_input_tokens=5, model="gemini-2.5-flash-001"),
    GoogleScript(thoughts=["Thinking it over. "], thoughts_tokens=40),
    Script(omit_usage=True),
]
SUCCESS_IDS = ["plain", "cached", "thoughts", "no-usage"]


@pytest.mark.parametrize("script", SUCCESS_SCRIPTS, ids=SUCCESS_IDS)
async def test_complete_reads_what_the_sdk_reads(
    session: aiohttp.ClientSession, script: Script
) -> None:
    async with start(script) as (url, state), sdk_client(url) as sdk:
        theirs = await sdk.models.generate_content(
            model=MODEL, contents=SDK_CONTENTS, config=SDK_CONFIG
        )
        mine = await ours(session, url).complete(OURS)
    assert mine.text == theirs.text
    assert mine.usage == sdk_usage(theirs.usage_metadata)
    assert mine.model == theirs.model_version
    assert theirs.candidates and theirs.candidates[0].finish_reason is not None
    assert mine.native_finish == theirs.candidates[0].finish_reason.value
    assert len(state.requests) == 2
    assert_same_request(*state.requests)


@pytest.mark.parametrize("script", SUCCESS_SCRIPTS, ids=SUCCESS_IDS)
async def test_stream_reads_what_the_sdk_reads(
    session: aiohttp.ClientSession, script: Script
) -> None:
    async with start(script) as (url, state), sdk_client(url) as sdk:
        chunks = [
            chunk async for chunk in await sdk.models.generate_content_stream(
                model=MODEL, contents=SDK_CONTENTS, config=SDK_CONFIG
            )
        ]
        events = [event async for event in ours(session, url).stream(OURS)]
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert texts == [c.text for c in chunks if c.text]
    # The SDK's last chunk carries the complete running total; ours must equal it.
    assert end.usage == sdk_usage(chunks[-1].usage_metadata)
    assert end.model == chunks[-1].model_version
    assert len(state.requests) == 2
    assert state.requests[0].query == state.requests[1].query == {"alt": "sse"}
    assert_same_request(*state.requests)


def assert_same_request(sdk: Any, mine: Any) -> None:
    """Same URL, key header and body; the SDK also tags systemInstruction with role "user"."""
    assert mine.path == sdk.path
    assert mine.headers["x-goog-api-key"] == sdk.headers["x-goog-api-key"] == API_KEY
    sdk_body = dict(sdk.json)
    sdk_body["systemInstruction"] = {
        k: v for k, v in sdk_body["systemInstruction"].items() if k != "role"
    }
    assert mine.json == sdk_body


# (id, key, script, SDK class, code, google status, our class)
ERROR_CASES: list[tuple[str, str, Script, type[errors.APIError], int, str, type[ProviderError]]] = [
    ("wrong-key", WRONG_KEY, Script(), errors.ClientError, 400, "INVALID_ARGUMENT",
     ProviderAuthError),
    ("401", API_KEY, Script(error_status=401), errors.ClientError, 401, "UNAUTHENTICATED",
     ProviderAuthError),
    ("403", API_KEY, Script(error_status=403), errors.ClientError, 403, "PERMISSION_DENIED",
     ProviderAuthError),
    ("400", API_KEY, Script(error_status=400), errors.ClientError, 400, "INVALID_ARGUMENT",
     ProviderBadRequest),
    ("429", API_KEY, GoogleScript(error_status=429, retry_after="30", retry_after_header=False),
     errors.ClientError, 429, "RESOURCE_EXHAUSTED", ProviderRateLimited),
    ("500", API_KEY, Script(error_status=500), errors.ServerError, 500, "INTERNAL",
     ProviderUnavailable),
    ("503", API_KEY, Script(error_status=503), errors.ServerError, 503, "UNAVAILABLE",
     ProviderUnavailable),
    ("504", API_KEY, Script(error_status=504), errors.ServerError, 504, "DEADLINE_EXCEEDED",
     ProviderTimeout),
]


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(
    ("key", "script", "sdk_kind", "code", "status", "our_kind"),
    [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES],
)
async def test_errors_are_the_same_kind_for_the_sdk_and_us(
    session: aiohttp.ClientSession, mode: str, key: str, script: Script,
    sdk_kind: type[errors.APIError], code: int, status: str, our_kind: type[ProviderError],
) -> None:
    async with start(script) as (url, state), sdk_client(url, key) as sdk:
        with pytest.raises(errors.APIError) as theirs:
            await sdk_call(sdk, mode)
        assert len(state.requests) == 1, "the SDK retried"
        with pytest.raises(ProviderError) as mine:
            await our_call(ours(session, url, key), mode)
    assert type(theirs.value) is sdk_kind
    assert (theirs.value.code, theirs.value.status) == (code, status)
    assert type(mine.value) is our_kind
    assert mine.value.status == theirs.value.code
    if isinstance(mine.value, ProviderRateLimited):
        assert mine.value.retry_after == retry_delay(theirs.value.details)
    if key == WRONG_KEY:
        assert reasons(theirs.value.details) == {"API_KEY_INVALID"}
        assert WRONG_KEY not in str(mine.value)


async def test_an_in_stream_error_frame_is_an_error_for_both(
    session: aiohttp.ClientSession,
) -> None:
    async with start(Script(stream_error_after=1, error_message="mid-stream")) as (url, state):
        async with sdk_client(url) as sdk:
            theirs, sdk_texts = await drain_sdk(sdk, state)
        mine, our_texts = await drain_ours(ours(session, url))
    assert isinstance(theirs, errors.ServerError) and theirs.code == 500
    assert isinstance(mine, ProviderUnavailable) and "mid-stream" in str(mine)
    assert sdk_texts == our_texts == ["Hello"]


async def test_a_cut_connection_fails_both(session: aiohttp.ClientSession) -> None:
    async with start(Script(cut_after_chunks=2)) as (url, state):
        async with sdk_client(url) as sdk:
            theirs, sdk_texts = await drain_sdk(sdk, state)
        mine, our_texts = await drain_ours(ours(session, url))
    assert isinstance(theirs, aiohttp.ClientPayloadError)
    assert isinstance(mine, ProviderStreamCut)
    assert sdk_texts == our_texts == ["Hello", " from"]


async def test_a_missing_finish_reason_passes_the_sdk_but_not_us(
    session: aiohttp.ClientSession,
) -> None:
    # A deliberate difference: the SDK returns whatever arrived when the body ends; we
    # refuse to call an answer without a finishReason complete (see google.py).
    async with start(Script(omit_terminal=True)) as (url, state):
        async with sdk_client(url) as sdk:
            theirs, sdk_texts = await drain_sdk(sdk, state)
        mine, our_texts = await drain_ours(ours(session, url))
    assert theirs is None
    assert isinstance(mine, ProviderStreamCut)
    assert sdk_texts == our_texts == ["Hello", " from", " the fake"]


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_a_blocked_prompt_reads_the_same(
    session: aiohttp.ClientSession, mode: str
) -> None:
    async with start(GoogleScript(block_reason="SAFETY")) as (url, _), sdk_client(url) as sdk:
        if mode == "complete":
            theirs = await sdk.models.generate_content(model=MODEL, contents="Hi")
        else:
            stream = await sdk.models.generate_content_stream(model=MODEL, contents="Hi")
            theirs = [c async for c in stream][-1]
        text, usage, finish = await our_call(ours(session, url), mode)
    assert theirs.text is None and text == ""
    assert theirs.prompt_feedback is not None and theirs.prompt_feedback.block_reason is not None
    assert finish == f"blockReason:{theirs.prompt_feedback.block_reason.value}"
    assert usage == sdk_usage(theirs.usage_metadata)


async def sdk_call(sdk: AsyncClient, mode: str) -> None:
    """One SDK call in either mode, draining a stream."""
    if mode == "complete":
        await sdk.models.generate_content(model=MODEL, contents="Hi")
    else:
        async for _ in await sdk.models.generate_content_stream(model=MODEL, contents="Hi"):
            pass


async def our_call(provider: GoogleProvider, mode: str) -> tuple[str, Usage | None, str | None]:
    """One adapter call in either mode: (text, usage, Google's own finish reason)."""
    request = CompletionRequest(model=MODEL, messages=(Message("user", "Hi"),))
    if mode == "complete":
        result = await provider.complete(request)
        return result.text, result.usage, result.native_finish
    texts: list[str] = []
    async for event in provider.stream(request):
        if isinstance(event, TextDelta):
            texts.append(event.text)
        elif isinstance(event, StreamEnd):
            return "".join(texts), event.usage, event.native_finish
    raise AssertionError("stream ended without StreamEnd")


async def drain_sdk(
    sdk: AsyncClient, state: FakeState
) -> tuple[Exception | None, list[str]]:
    """Stream with the SDK: (the error it raised or None, the texts before it)."""
    texts: list[str] = []
    try:
        async for chunk in await sdk.models.generate_content_stream(model=MODEL, contents="Hi"):
            if chunk.text:
                texts.append(chunk.text)
    except Exception as exc:  # the kind is what the test compares
        return exc, texts
    finally:
        assert len(state.requests) == 1, "the SDK reconnected"
    return None, texts


async def drain_ours(provider: GoogleProvider) -> tuple[ProviderError | None, list[str]]:
    """Stream with the adapter: (the error it raised or None, the texts before it)."""
    texts: list[str] = []
    try:
        async for event in provider.stream(OURS):
            if isinstance(event, TextDelta):
                texts.append(event.text)
    except ProviderError as exc:
        return exc, texts
    return None, texts


def retry_delay(details: Any) -> float | None:
    """The RetryInfo delay in an error body as the SDK kept it, in seconds."""
    for detail in details["error"].get("details", ()):
        if detail["@type"].endswith("RetryInfo"):
            return float(detail["retryDelay"].removesuffix("s"))
    return None


def reasons(details: Any) -> set[str]:
    """The ErrorInfo reasons in an error body as the SDK kept it."""
    return {d["reason"] for d in details["error"].get("details", ()) if "reason" in d}
