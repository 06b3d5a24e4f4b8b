"""Every failure the chat can meet is shown as a plain sentence, never as raw JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.tests.usage.portal import SPECIALISTS, Portal, running_portal
from backend.tests.web.browser import assert_clean
from backend.tests.web.chat_page import answered, notice, open_chat, send

DEMO, OPENAI = SPECIALISTS["demo"], SPECIALISTS["openai"]


def _plain(sentence: str) -> None:
    # A sentence: no JSON, no error code (they have underscores), no HTTP jargon.
    assert sentence.endswith(".") and sentence[0].isupper(), sentence
    assert not any(mark in sentence for mark in ("{", "_", "HTTP", "upstream")), sentence


async def test_the_rate_limit_is_a_sentence_with_its_wait(tmp_path: Path, browser: Any) -> None:
    async with running_portal(
        tmp_path, f"sqlite:///{tmp_path / 'u.db'}", rate_limit_requests=1,
        rate_limit_window_seconds=600,
    ) as portal:
        page = await open_chat(browser, portal, DEMO)
        await send(page, "first")
        await answered(page, 1)
        assert "Requests left: 0" in await page.inner_text(".turn.assistant .meta")
        await send(page, "second")
        sentence = await notice(page)
        assert sentence.startswith("You have sent too many messages for now. Try again in ")
        assert "minutes" in sentence or "seconds" in sentence
        _plain(sentence)
        # Refused before any answer: the message is back in the box, not in the history.
        assert await page.input_value("#message") == "second"
        assert await page.locator(".turn").count() == 2
        assert_clean(page)


async def test_upstream_failures_are_sentences(portal: Portal, browser: Any) -> None:
    script = portal.fakes["openai"].script
    page = await open_chat(browser, portal, OPENAI)

    script.error_status = 500  # the provider answers 500: the portal says 503
    await send(page, "hello")
    sentence = await notice(page)
    assert sentence == "The specialist is unavailable right now. Try again in a moment."
    assert await page.locator(".turn").count() == 0

    script.error_status = None  # a stream that breaks after two pieces
    script.chunks = ["Part one,", " part two,", " part three"]
    script.stream_error_after = 2
    await send(page, "hello again")
    await page.wait_for_selector(".turn.assistant .error")
    error = await page.inner_text(".turn.assistant .error")
    assert error.startswith("The answer stopped part-way")
    _plain(error)
    assert await page.inner_text(".turn.assistant .body") == "Part one, part two,"
    assert_clean(page)


ROUTED = {
    402: ({"error": "budget_exceeded", "message": "monthly budget used"},
          "Your budget for this period is used up"),
    403: ({"error": "forbidden", "message": "not in group"},
          "You are not allowed to use this specialist"),
    502: ({"error": "upstream_auth", "message": "upstream rejected the key"},
          "The specialist's model provider failed to answer"),
    504: ({"error": "upstream_timeout", "message": "timed out"},
          "The model took too long to answer"),
}


def _refusal(status: int, body: dict[str, str]) -> Any:
    async def refuse(route: Any) -> None:
        await route.fulfill(status=status, content_type="application/json", body=json.dumps(body))
    return refuse


async def test_statuses_this_server_cannot_produce_yet_are_sentences_too(
    portal: Portal, browser: Any
) -> None:
    """402 (budgets) and 403 (groups) come with later issues: the page is ready for them."""
    page = await open_chat(browser, portal, DEMO)
    for status, (body, start) in ROUTED.items():
        await page.route("**/chat/stream", _refusal(status, body))
        await send(page, f"status {status}")
        await page.wait_for_function(
            "s => document.getElementById('notice').textContent.startsWith(s)", arg=start
        )
        _plain(await page.inner_text("#notice"))
        await page.unroute("**/chat/stream")
    await page.route("**/chat/stream", lambda route: route.abort())
    await send(page, "offline")
    await page.wait_for_function(
        "() => document.getElementById('notice').textContent.includes('could not be reached')"
    )
    assert await page.locator(".turn").count() == 0
