"""How a Gemini answer ends, read by google-genai and by our adapter from the same bytes.

SAFETY / RECITATION / MAX_TOKENS (with the budget spent thinking), a blocked prompt,
CONTINUATION with a continuationToken (the SDK follows it by default, and so do we), and
a google.rpc.Status written outside the SSE framing mid-stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from google.genai import errors

from backend.providers.base import StreamEnd, TextDelta
from backend.providers.errors import ProviderError, ProviderRateLimited, ProviderUnavailable
from backend.providers.google import GoogleProvider
from backend.tests.fakes.google_fake import GoogleScript, continuation_token, hop_of, start
from backend.tests.providers.test_google_conformance import (
    MODEL,
    OURS,
    SDK_CONFIG,
    SDK_CONTENTS,
    assert_same_request,
    ours,
    sdk_client,
    sdk_usage,
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def sdk_chunks(sdk: Any) -> list[Any]:
    stream = await sdk.models.generate_content_stream(
        model=MODEL, contents=SDK_CONTENTS, config=SDK_CONFIG
    )
    return [chunk async for chunk in stream]


async def ours_stream(provider: GoogleProvider) -> tuple[str, StreamEnd]:
    text, end = "", None
    async for event in provider.stream(OURS):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, StreamEnd):
            end = event
    assert end is not None
    return text, end


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (GoogleScript(chunks=[], finish_reason="SAFETY"), "content_filter"),
        (GoogleScript(chunks=["Once upon"], finish_reason="RECITATION"), "content_filter"),
        (GoogleScript(chunks=["Half an"], finish_reason="MAX_TOKENS"), "length"),
        # Gemini 2.5 thinks by default: the whole budget can go to thoughts.
        (GoogleScript(chunks=[], finish_reason="MAX_TOKENS", thoughts=["Let me see. "],
                      thoughts_tokens=64), "length"),
        (GoogleScript(chunks=[], block_reason="PROHIBITED_CONTENT"), "content_filter"),
        (GoogleScript(chunks=[], block_reason="OTHER"), "content_filter"),
    ],
    ids=["safety", "recitation", "max-tokens", "all-thinking", "prompt-blocked", "blocked-other"],
)
async def test_finish_reasons_in_both_modes(
    session: aiohttp.ClientSession, script: GoogleScript, reason: str
) -> None:
    async with start(script) as (url, _), sdk_client(url) as sdk:
        theirs = await sdk.models.generate_content(
            model=MODEL, contents=SDK_CONTENTS, config=SDK_CONFIG
        )
        chunks = await sdk_chunks(sdk)
        mine = await ours(session, url).complete(OURS)
        text, end = await ours_stream(ours(session, url))
    if script.block_reason:
        native = f"blockReason:{script.block_reason}"
        assert theirs.prompt_feedback is not None
        assert theirs.prompt_feedback.block_reason.value == script.block_reason
    else:
        native = script.finish_reason
        assert theirs.candidates is not None
        assert theirs.candidates[0].finish_reason.value == script.finish_reason
    assert (theirs.text or "") == mine.text == text == "".join(script.chunks)
    assert "".join(c.text or "" for c in chunks) == text
    assert (mine.finish_reason, mine.native_finish) == (end.finish_reason, end.native_finish)
    assert (mine.finish_reason, mine.native_finish) == (reason, native)
    assert mine.usage == end.usage == sdk_usage(theirs.usage_metadata)
    if script.thoughts_tokens:
        assert mine.usage is not None and mine.usage.reasoning_tokens == 64


async def test_continuation_is_followed_like_the_sdk_does(session: aiohttp.ClientSession) -> None:
    script = GoogleScript(chunks=["Part two."], continuation_hops=2, input_tokens=10,
                          output_tokens=5)
    async with start(script) as (url, state), sdk_client(url) as sdk:
        theirs = await sdk.models.generate_content(
            model=MODEL, contents=SDK_CONTENTS, config=SDK_CONFIG
        )
        sdk_requests = list(state.requests)
        state.requests.clear()
        mine = await ours(session, url).complete(OURS)
        our_requests = list(state.requests)
        state.requests.clear()
        chunks = await sdk_chunks(sdk)
        sdk_stream_requests = list(state.requests)
        state.requests.clear()
        text, end = await ours_stream(ours(session, url))
        our_stream_requests = list(state.requests)
    whole = "Part one. Part one. Part two."
    assert theirs.text == mine.text == whole
    assert "".join(c.text or "" for c in chunks) == text == whole
    # Three hops each way, resumed with the token the previous hop ended with.
    for requests in (sdk_requests, our_requests, sdk_stream_requests, our_stream_requests):
        assert [hop_of(r.json) for r in requests] == [0, 1, 2]
        assert requests[1].json["continuationToken"] == continuation_token(1)
    for theirs_sent, ours_sent in zip(sdk_requests, our_requests, strict=True):
        assert_same_request(theirs_sent, ours_sent)
    # Each hop is billed on its own: the counts add up, in the SDK and in ours.
    assert theirs.usage_metadata is not None
    assert theirs.usage_metadata.candidates_token_count == 15
    assert mine.usage == end.usage
    assert mine.usage is not None
    assert (mine.usage.input_tokens, mine.usage.output_tokens) == (30, 15)
    assert mine.finish_reason == end.finish_reason == "stop"


@pytest.mark.parametrize(
    ("code", "sdk_error", "our_error"),
    [
        (429, errors.ClientError, ProviderRateLimited),
        (503, errors.ServerError, ProviderUnavailable),
    ],
)
@pytest.mark.parametrize("after", [0, 1], ids=["before-text", "after-text"])
async def test_a_status_outside_the_sse_framing_is_the_error_it_names(
    session: aiohttp.ClientSession, code: int, sdk_error: type[errors.APIError],
    our_error: type[ProviderError], after: int,
) -> None:
    script = GoogleScript(
        stream_error_after=after, status_outside_sse=True, stream_error_code=code,
        retry_after="7", error_message="Resource has been exhausted (e.g. check quota).",
    )
    texts: list[str] = []
    async with start(script) as (url, _), sdk_client(url) as sdk:
        with pytest.raises(sdk_error) as theirs:
            async for chunk in await sdk.models.generate_content_stream(
                model=MODEL, contents=SDK_CONTENTS, config=SDK_CONFIG
            ):
                texts.append(chunk.text or "")
        with pytest.raises(our_error) as mine:
            await ours_stream(ours(session, url))
    assert theirs.value.code == code
    assert "Resource has been exhausted" in mine.value.message
    assert len(texts) == after
    if code == 429:
        assert mine.value.retry_after == 7.0
    assert mine.value.billed is (False if after == 0 else None)
    if after:  # the running usage seen before the failure is kept
        assert mine.value.usage is not None and mine.value.usage.input_tokens == 11
