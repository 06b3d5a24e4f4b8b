"""How an answer ended, on the page: a refusal or a safety block is marked and left out of
the conversation sent later (the pair that caused it too); a truncated answer says so; an
answer that is no answer at all is a plain sentence."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backend.tests.fakes.google_fake import GoogleScript
from backend.tests.fakes.script import Script
from backend.tests.usage.portal import SPECIALISTS, Portal
from backend.tests.web.browser import assert_clean, axe_violations
from backend.tests.web.chat_page import answered, notice, open_chat, send
from backend.tests.web.test_chat_errors import _plain

OPENAI = SPECIALISTS["openai"]
REFUSAL = "I'm sorry, I can't help with that."


async def _stored(page: Any, specialist: str) -> list[dict[str, Any]]:
    raw = await page.evaluate("k => localStorage.getItem(k)", "portal.chat.v1." + specialist)
    turns: list[dict[str, Any]] = json.loads(raw)
    return turns


def _sent_conversation(portal: Portal) -> list[tuple[str, str]]:
    """What the last request upstream carried, past the system prompt."""
    messages = portal.fakes["openai"].requests[-1].json["messages"]
    return [(m["role"], m["content"]) for m in messages if m["role"] != "system"]


REFUSED = [
    pytest.param(Script(refusal=REFUSAL), REFUSAL, "The model declined to answer.",
                 id="refusal"),
    pytest.param(Script(chunks=["Once upon", " a time"], stop_reason="content_filter"),
                 "Once upon a time", "The provider's safety system stopped this answer.",
                 id="content_filter"),
]


@pytest.mark.parametrize(("script", "shown", "marker"), REFUSED)
async def test_a_refused_answer_is_marked_and_left_out_of_the_history(
    portal: Portal, browser: Any, script: Script, shown: str, marker: str
) -> None:
    fake = portal.fakes["openai"]
    page = await open_chat(browser, portal, OPENAI)
    await send(page, "first question")
    await answered(page, 1)

    fake.script = script
    await send(page, "the question it refuses")
    await answered(page, 2)
    refused = page.locator(".turn.assistant").last
    assert await refused.locator(".body").inner_text() == shown
    note = await refused.locator(".refusal").inner_text()
    assert note.startswith(marker) and "left out of the conversation" in note
    assert await page.locator(".turn.left-out").count() == 2  # the question and its answer

    # Stored to be shown again, flagged so that it is never sent.
    stored = await _stored(page, OPENAI)
    assert [(t["role"], bool(t.get("leftOut"))) for t in stored] == [
        ("user", False), ("assistant", False), ("user", True), ("assistant", True),
    ]
    assert stored[3]["meta"]["finish_reason"] == (script.stop_reason or "refusal")

    # The next message carries the conversation without the refused pair, after a reload too.
    fake.script = Script()
    await page.reload()
    await page.wait_for_selector(".turn.left-out .refusal")
    await send(page, "something else")
    await answered(page, 3)
    assert _sent_conversation(portal) == [
        ("user", "first question"), ("assistant", "Hello from the fake"),
        ("user", "something else"),
    ]
    assert await axe_violations(page) == []
    assert_clean(page)


async def test_a_truncated_answer_says_it_was_cut_short_and_stays_in_the_history(
    portal: Portal, browser: Any
) -> None:
    fake = portal.fakes["openai"]
    fake.script = Script(chunks=["The first", " half"], stop_reason="length")
    page = await open_chat(browser, portal, OPENAI)
    await send(page, "tell me everything")
    await answered(page, 1)
    cut = page.locator(".turn.assistant").last
    assert await cut.locator(".body").inner_text() == "The first half"
    assert (await cut.locator(".cut").inner_text()).startswith(
        "Cut short (output limit reached)"
    )
    assert await page.locator(".turn.left-out").count() == 0
    fake.script = Script()
    await send(page, "go on")
    await answered(page, 2)
    assert _sent_conversation(portal) == [
        ("user", "tell me everything"), ("assistant", "The first half"), ("user", "go on"),
    ]
    assert_clean(page)


NO_ANSWER = [
    # (provider, script, the sentence's start)
    pytest.param("anthropic", Script(chunks=[], stop_reason="refusal"),
                 "The model declined to answer this message", id="content_refused-422"),
    pytest.param("openai", Script(chunks=[], stop_reason="content_filter"),
                 "The provider's safety system blocked this message", id="content_filtered-422"),
    pytest.param("openai", Script(chunks=[], stop_reason="length", output_tokens=256,
                                  reasoning_tokens=256),
                 "The model used its whole output limit on reasoning",
                 id="output_budget_exhausted-502"),
    # Thought parts open the stream, then the budget runs out: a final error event.
    pytest.param("google", GoogleScript(chunks=[], thoughts=["Thinking hard. "],
                                        thoughts_tokens=256, finish_reason="MAX_TOKENS"),
                 "The model used its whole output limit on reasoning",
                 id="output_budget_exhausted-event"),
]


@pytest.mark.parametrize(("provider", "script", "start"), NO_ANSWER)
async def test_no_answer_at_all_is_a_sentence_and_the_message_goes_back(
    portal: Portal, browser: Any, provider: str, script: Script, start: str
) -> None:
    portal.fakes[provider].script = script
    page = await open_chat(browser, portal, SPECIALISTS[provider])
    await send(page, "a question with no answer")
    sentence = await notice(page)
    assert sentence.startswith(start), sentence
    _plain(sentence)
    assert await page.locator(".turn").count() == 0
    assert await page.input_value("#message") == "a question with no answer"
    assert await _stored(page, SPECIALISTS[provider]) == []
    assert_clean(page)


async def test_an_empty_answer_is_a_sentence(portal: Portal, browser: Any) -> None:
    """No fake ends a call with an error and no text, so the portal's 502 is routed in."""
    page = await open_chat(browser, portal, OPENAI)
    body = {"error": "empty_answer", "message": "openai ended the answer with an error",
            "provider": "openai", "finish_reason": "error", "provider_reason": None}

    async def empty(route: Any) -> None:
        await route.fulfill(status=502, content_type="application/json", body=json.dumps(body))

    await page.route("**/chat/stream", empty)
    await send(page, "anything")
    sentence = await notice(page)
    assert sentence == "The model ended without writing any answer. Please try again."
    assert_clean(page)
