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

from backend.tests.chat.conftest import SPECIALISTS, Portal
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
    async with AsyncOpenAI(
        base_url=portal.url + "/v1", api_key="anything", max_retries=0, timeout=10
    ) as client:
        yield client


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
