"""How an answer ended, through every way in: /chat/send, /chat/stream, the WebSocket,
/v1 (driven by the official openai SDK), and the usage row.

Each case is a fake sending the documented wire response for it (see the provider
fakes); the SDK-side reading of the same bytes is checked in tests/providers/test_finish_*.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import orjson
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect

from backend.config.pricing import PriceBook
from backend.providers.base import Usage
from backend.tests.chat.conftest import MODELS, SPECIALISTS, Portal
from backend.tests.fakes.google_fake import GoogleScript
from backend.tests.fakes.script import Script
from backend.tests.transports.conftest import answer, usage_rows, ws_url

REFUSAL = "I'm sorry, I can't help with that."


@dataclass
class Seen:
    """One question asked every way: what each transport answered, and the usage rows."""

    send: tuple[int, dict[str, Any]]
    sse: tuple[int, list[tuple[str, dict[str, Any]]] | dict[str, Any]]
    ws: tuple[list[dict[str, Any]], dict[str, Any]]
    v1: Any  # a ChatCompletion or the SDK's exception
    v1_stream: tuple[list[Any], Exception | None]
    rows: list[dict[str, Any]]


@pytest.fixture
async def sdk(portal: Portal) -> AsyncIterator[AsyncOpenAI]:
    async with _sdk(portal) as client:
        yield client


def _sdk(portal: Portal) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=portal.url + "/v1", api_key="anything", max_retries=0, timeout=10)


@pytest.fixture
async def unbroken(portal_factory: Any) -> Portal:
    """A portal whose breakers stay closed: a case failing five ways in a row stays itself
    (the fifth is not turned into `upstream_circuit_open`)."""
    result: Portal = await portal_factory(breaker_failure_threshold=0)
    return result


async def _sse(portal: Portal, payload: dict[str, Any]) -> tuple[int, Any]:
    async with portal.client.stream("POST", "/chat/stream", json=payload) as response:
        if response.status_code != 200:
            return response.status_code, orjson.loads(await response.aread())
        events, name = [], "message"
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, orjson.loads(line.split(":", 1)[1])))
        return 200, events


async def ask_every_way(portal: Portal, sdk: AsyncOpenAI, provider: str) -> Seen:
    """Ask the provider's specialist five ways (the fake answers each the same)."""
    payload = {"specialist_id": SPECIALISTS[provider], "message": "Tell me."}
    response = await portal.client.post("/chat/send", json=payload)
    send = (response.status_code, response.json())
    sse = await _sse(portal, payload)
    async with connect(ws_url(portal)) as ws:
        await ws.send(orjson.dumps(payload).decode())
        turn = await answer(ws)
    messages: Any = [{"role": "user", "content": "Tell me."}]
    v1: Any
    try:
        v1 = await sdk.chat.completions.create(model=SPECIALISTS[provider], messages=messages)
    except openai.APIError as exc:
        v1 = exc
    chunks: list[Any] = []
    failure: Exception | None = None
    try:
        stream = await sdk.chat.completions.create(
            model=SPECIALISTS[provider], messages=messages, stream=True
        )
        chunks = [chunk async for chunk in stream]
    except openai.APIError as exc:
        failure = exc
    return Seen(send, sse, turn, v1, (chunks, failure), await usage_rows(portal, 5))


def _v1_stream_text(chunks: list[Any]) -> tuple[str, str, str | None]:
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    refusal = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    finish = next((c.choices[0].finish_reason for c in chunks if c.choices and
                   c.choices[0].finish_reason), None)
    return content, refusal, finish


async def test_an_openai_refusal_is_the_content_marked_as_refusal(
    portal: Portal, sdk: AsyncOpenAI
) -> None:
    portal.fakes["openai"].script = Script(refusal=REFUSAL)
    seen = await ask_every_way(portal, sdk, "openai")
    status, body = seen.send
    assert status == 200 and (body["content"], body["finish_reason"]) == (REFUSAL, "refusal")
    status, events = seen.sse
    assert status == 200 and isinstance(events, list)
    assert "".join(e[1]["content"] for e in events[:-1]) == REFUSAL
    assert events[-1][1]["is_final"] and events[-1][1]["finish_reason"] == "refusal"
    chunks, final = seen.ws
    assert "".join(c["content"] for c in chunks) == REFUSAL
    assert final["finish_reason"] == "refusal"
    # /v1 answers as OpenAI does: content null, the text in `refusal`.
    message = seen.v1.choices[0].message
    assert (message.content, message.refusal) == (None, REFUSAL)
    assert seen.v1.choices[0].finish_reason == "stop"
    assert _v1_stream_text(seen.v1_stream[0]) == ("", REFUSAL, "stop")
    # An answer was given (the refusal): success, and the reason on every row.
    assert all(r["success"] and r["finish_reason"] == "refusal" for r in seen.rows)
    assert all(r["billed"] and r["input_tokens"] == 11 for r in seen.rows)


CASES = [
    # (provider, script, code, status, finish_reason, provider_reason)
    pytest.param("anthropic", Script(chunks=[], stop_reason="refusal"), "content_refused", 422,
                 "refusal", "refusal", id="anthropic-refusal"),
    pytest.param("google", GoogleScript(chunks=[], finish_reason="SAFETY"), "content_filtered",
                 422, "content_filter", "SAFETY", id="gemini-safety"),
    pytest.param("google", GoogleScript(chunks=[], block_reason="PROHIBITED_CONTENT"),
                 "content_filtered", 422, "content_filter", "blockReason:PROHIBITED_CONTENT",
                 id="gemini-prompt-blocked"),
    pytest.param("openai", Script(chunks=[], stop_reason="content_filter"), "content_filtered",
                 422, "content_filter", "content_filter", id="openai-filter"),
    pytest.param("openai", Script(chunks=[], stop_reason="length", output_tokens=256,
                                  reasoning_tokens=256),
                 "output_budget_exhausted", 502, "length", "length", id="openai-all-reasoning"),
    pytest.param("google", GoogleScript(chunks=[], finish_reason="MAX_TOKENS",
                                        thoughts_tokens=256, output_tokens=0),
                 "output_budget_exhausted", 502, "length", "MAX_TOKENS", id="gemini-all-thinking"),
    # A finish reason we call `error` with no text: chat/errors.py's AnswerError itself.
    pytest.param("google", GoogleScript(chunks=[], finish_reason="OTHER"), "empty_answer", 502,
                 "error", "OTHER", id="gemini-other"),
]


@pytest.mark.parametrize(("provider", "script", "code", "status", "reason", "native"), CASES)
async def test_no_text_is_a_clear_error_everywhere(
    portal: Portal, sdk: AsyncOpenAI, provider: str, script: Script, code: str, status: int,
    reason: str, native: str,
) -> None:
    portal.fakes[provider].script = script
    seen = await ask_every_way(portal, sdk, provider)
    sent_status, body = seen.send
    assert (sent_status, body["error"], body["provider"]) == (status, code, provider)
    assert (body["finish_reason"], body["provider_reason"]) == (reason, native)
    if code == "output_budget_exhausted":
        assert body["max_output_tokens"] == 256 and "max_output_tokens (256)" in body["message"]
    # Nothing was streamed yet, so the stream answers with the same status and body.
    assert seen.sse[0] == status and isinstance(seen.sse[1], dict)
    assert seen.sse[1]["error"] == code
    assert seen.ws[1]["type"] == "error" and seen.ws[1]["error"] == code
    assert seen.ws[1]["status"] == status
    # /v1: the OpenAI error shape (422 becomes OpenAI's 400), in both modes.
    expected = openai.BadRequestError if status == 422 else openai.InternalServerError
    assert isinstance(seen.v1, expected) and seen.v1.code == code
    assert isinstance(seen.v1_stream[1], expected)
    # Billed by the provider, so recorded with its real counts, as a failure with its reason.
    for row in seen.rows:
        assert (row["success"], row["error_kind"], row["finish_reason"]) == (False, code, reason)
        assert row["billed"] and not row["tokens_estimated"] and row["input_tokens"] == 11
        assert row["estimated_cost_usd"] is not None and row["estimated_cost_usd"] > 0


async def test_truncation_is_signalled_everywhere(portal: Portal, sdk: AsyncOpenAI) -> None:
    portal.fakes["anthropic"].script = Script(chunks=["The first", " half"],
                                              stop_reason="max_tokens")
    seen = await ask_every_way(portal, sdk, "anthropic")
    assert seen.send[0] == 200 and seen.send[1]["finish_reason"] == "length"
    assert seen.send[1]["content"] == "The first half"
    events = seen.sse[1]
    assert isinstance(events, list) and events[-1][1]["finish_reason"] == "length"
    assert seen.ws[1]["finish_reason"] == "length"
    assert seen.v1.choices[0].finish_reason == "length"
    assert _v1_stream_text(seen.v1_stream[0]) == ("The first half", "", "length")
    assert all(r["success"] and r["finish_reason"] == "length" for r in seen.rows)


async def test_a_block_after_text_keeps_the_text_and_says_so(
    portal: Portal, sdk: AsyncOpenAI
) -> None:
    portal.fakes["google"].script = GoogleScript(chunks=["Once upon", " a time"],
                                                 finish_reason="RECITATION")
    seen = await ask_every_way(portal, sdk, "google")
    assert (seen.send[1]["content"], seen.send[1]["finish_reason"]) == (
        "Once upon a time", "content_filter"
    )
    events = seen.sse[1]
    assert isinstance(events, list) and events[-1][1]["finish_reason"] == "content_filter"
    assert seen.v1.choices[0].finish_reason == "content_filter"
    assert _v1_stream_text(seen.v1_stream[0])[2] == "content_filter"
    assert all(r["success"] and r["finish_reason"] == "content_filter" for r in seen.rows)


async def test_an_empty_answer_after_the_stream_started_ends_with_an_error_event(
    portal: Portal,
) -> None:
    # Thought parts open the stream (signs of life), then the budget runs out: no text.
    portal.fakes["google"].script = GoogleScript(
        chunks=[], thoughts=["Thinking hard. "], thoughts_tokens=256, finish_reason="MAX_TOKENS"
    )
    payload = {"specialist_id": SPECIALISTS["google"], "message": "Tell me."}
    status, events = await _sse(portal, payload)
    assert status == 200 and isinstance(events, list)
    assert [name for name, _ in events] == ["error"]
    assert events[0][1]["error"] == "output_budget_exhausted"
    assert events[0][1]["max_output_tokens"] == 256
    (row,) = await usage_rows(portal, 1)
    assert (row["error_kind"], row["finish_reason"]) == ("output_budget_exhausted", "length")
    assert row["output_tokens"] == 256  # the thinking it was billed for


async def test_an_anthropic_refusal_after_some_text_keeps_the_text_marked_as_refusal(
    portal: Portal, sdk: AsyncOpenAI
) -> None:
    portal.fakes["anthropic"].script = Script(chunks=["Here is", " how"], stop_reason="refusal")
    seen = await ask_every_way(portal, sdk, "anthropic")
    assert seen.send[0] == 200
    assert (seen.send[1]["content"], seen.send[1]["finish_reason"]) == ("Here is how", "refusal")
    events = seen.sse[1]
    assert isinstance(events, list) and events[-1][1]["finish_reason"] == "refusal"
    assert "".join(e[1]["content"] for e in events[:-1]) == "Here is how"
    assert "".join(c["content"] for c in seen.ws[0]) == "Here is how"
    assert seen.ws[1]["finish_reason"] == "refusal"
    # /v1 whole: the turn is marked as OpenAI marks a refusal (content null, text in refusal).
    message = seen.v1.choices[0].message
    assert (message.content, message.refusal) == (None, "Here is how")
    # /v1 streamed: the text went out as content before the refusal arrived; the finish
    # chunk's portal facts are where a streaming client learns how the turn ended.
    chunks = seen.v1_stream[0]
    assert _v1_stream_text(chunks) == ("Here is how", "", "stop")
    facts = [c.portal for c in chunks if getattr(c, "portal", None)]
    assert facts and facts[-1]["finish_reason"] == "refusal"
    assert all(r["success"] and r["finish_reason"] == "refusal" and r["billed"]
               for r in seen.rows)


async def test_anthropic_text_in_content_block_start_is_not_lost(
    portal: Portal, sdk: AsyncOpenAI
) -> None:
    # A proxy's habit: the first text inside content_block_start instead of an empty block.
    portal.fakes["anthropic"].script = Script(text_in_block_start=True)
    seen = await ask_every_way(portal, sdk, "anthropic")
    whole = "Hello from the fake"
    assert seen.send[0] == 200 and seen.send[1]["content"] == whole
    events = seen.sse[1]
    assert isinstance(events, list)
    assert "".join(e[1]["content"] for e in events[:-1]) == whole
    assert "".join(c["content"] for c in seen.ws[0]) == whole
    assert seen.v1.choices[0].message.content == whole
    assert _v1_stream_text(seen.v1_stream[0]) == (whole, "", "stop")
    assert all(r["success"] and r["finish_reason"] == "stop" for r in seen.rows)


async def test_anthropic_cache_writes_are_priced_as_the_price_book_prices_them(
    portal: Portal, sdk: AsyncOpenAI
) -> None:
    # 2,000 input tokens of which 600 written to the 5-minute cache and 400 to the 1-hour one.
    portal.fakes["anthropic"].script = Script(
        input_tokens=2000, cache_write_5m=600, cache_write_1h=400
    )
    seen = await ask_every_way(portal, sdk, "anthropic")
    usage = Usage(input_tokens=2000, output_tokens=7, cached_input_tokens=0,
                  cache_write_tokens=1000, cache_write_1h_tokens=400)
    expected = PriceBook({}).estimate("anthropic", MODELS["anthropic"], usage)
    as_plain_input = PriceBook({}).estimate("anthropic", MODELS["anthropic"], Usage(2000, 7))
    assert expected is not None and as_plain_input is not None
    assert expected > as_plain_input  # writes cost more than input: the test can tell
    assert seen.send[1]["estimated_cost_usd"] == pytest.approx(expected)
    assert seen.send[1]["input_tokens"] == 2000
    assert len(seen.rows) == 5
    for row in seen.rows:
        assert (row["input_tokens"], row["output_tokens"]) == (2000, 7)
        assert row["estimated_cost_usd"] == pytest.approx(expected)


OPENAI_FRAME_ERRORS = [
    # (error type, code, portal code, status): OpenAI's own words for each failure.
    pytest.param("requests", "rate_limit_exceeded", "upstream_rate_limited", 503,
                 id="rate-limit"),
    pytest.param("invalid_request_error", "invalid_api_key", "upstream_auth", 502,
                 id="invalid-key"),
]


@pytest.mark.parametrize(("kind", "code", "error", "status"), OPENAI_FRAME_ERRORS)
async def test_an_openai_error_in_place_of_the_answer_keeps_its_kind_everywhere(
    unbroken: Portal, kind: str, code: str, error: str, status: int
) -> None:
    # Streamed: the error frame right after the role chunk; whole: a 200 whose body is it.
    unbroken.fakes["openai"].script = Script(
        stream_error_after=0, error_with_200=True, stream_error_kind=kind,
        stream_error_code=code, error_message="upstream said no",
    )
    async with _sdk(unbroken) as sdk:
        seen = await ask_every_way(unbroken, sdk, "openai")
    assert seen.send[0] == status and seen.send[1]["error"] == error
    assert seen.sse[0] == status and isinstance(seen.sse[1], dict)
    assert seen.sse[1]["error"] == error
    assert (seen.ws[1]["type"], seen.ws[1]["error"], seen.ws[1]["status"]) == (
        "error", error, status
    )
    assert isinstance(seen.v1, openai.InternalServerError) and seen.v1.code == error
    assert isinstance(seen.v1_stream[1], openai.InternalServerError)
    assert seen.v1_stream[1].code == error
    # The frame gave no retry hint, so none is made up.
    assert "retry-after" not in seen.v1.response.headers
    retries = 3 if error == "upstream_rate_limited" else 1  # a rate limit is retried
    assert len(unbroken.fakes["openai"].requests) == 5 * retries
    for row in seen.rows:  # refused before generating: nothing billed, nothing estimated
        assert (row["success"], row["error_kind"], row["finish_reason"]) == (False, error, None)
        assert (row["input_tokens"], row["output_tokens"], row["estimated_cost_usd"]) == (
            0, 0, 0.0
        )
        assert row["billed"] is False and row["tokens_estimated"] is False


async def test_an_anthropic_200_with_an_error_body_is_an_unbilled_failure(
    unbroken: Portal,
) -> None:
    # Whole: a proxy's 200 whose body is the API's error object. Streamed, the same failure
    # is the `error` event after message_start, whose input count the provider did report.
    unbroken.fakes["anthropic"].script = Script(
        error_with_200=True, stream_error_after=0, stream_error_kind="api_error",
        error_message="the upstream went away",
    )
    async with _sdk(unbroken) as sdk:
        seen = await ask_every_way(unbroken, sdk, "anthropic")
    assert seen.send[0] == 503 and seen.send[1]["error"] == "upstream_unavailable"
    assert seen.sse[0] == 503 and isinstance(seen.sse[1], dict)
    assert seen.ws[1]["error"] == "upstream_unavailable" and seen.ws[1]["status"] == 503
    assert isinstance(seen.v1, openai.InternalServerError)
    assert seen.v1.code == "upstream_unavailable"
    assert isinstance(seen.v1_stream[1], openai.InternalServerError)
    assert len(unbroken.fakes["anthropic"].requests) == 5 * 3  # retried like any 5xx
    whole = [r for r in seen.rows if not r["streamed"]]
    streamed = [r for r in seen.rows if r["streamed"]]
    assert len(whole) == 2 and len(streamed) == 3
    for row in whole:
        assert (row["success"], row["error_kind"]) == (False, "upstream_unavailable")
        assert (row["input_tokens"], row["output_tokens"], row["estimated_cost_usd"]) == (
            0, 0, 0.0
        )
        assert row["billed"] is False and row["tokens_estimated"] is False
    for row in streamed:  # message_start's counts are the provider's own: kept
        assert (row["success"], row["error_kind"]) == (False, "upstream_unavailable")
        assert row["input_tokens"] == 11 and row["billed"] and not row["tokens_estimated"]
