"""The chat page in headless Chromium: streaming, stop, reload, hostile answers, keyboard."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from backend.tests.usage.helpers import eventually, fetch_rows
from backend.tests.usage.portal import SPECIALISTS, Portal
from backend.tests.web.browser import (
    PHONE,
    assert_clean,
    axe_violations,
    new_page,
    record_metrics,
    screenshot,
)
from backend.tests.web.chat_page import WATCH_ANSWER, answered, open_chat, send

DEMO, OPENAI = SPECIALISTS["demo"], SPECIALISTS["openai"]
STORE_KEY = "portal.chat.v1." + DEMO


async def test_a_demo_answer_streams_in_piece_by_piece_and_survives_a_reload(
    portal: Portal, browser: Any
) -> None:
    page = await open_chat(browser, portal, DEMO)
    first_load = await page.evaluate("""() => {
      const entries = [...performance.getEntriesByType('navigation'),
                       ...performance.getEntriesByType('resource')];
      return {bytes: entries.reduce((n, e) => n + e.transferSize, 0), files: entries.length};
    }""")
    await page.evaluate(WATCH_ANSWER)
    await send(page, "Hello **portal**")
    await answered(page, 1)
    seen = await page.evaluate("() => window.__seen")
    lengths = [s["n"] for s in seen]
    # Word by word: many growing lengths on screen before the end, not one final paint.
    assert len(lengths) >= 10 and lengths == sorted(lengths), lengths
    answer = page.locator(".turn.assistant .body").last
    assert "demo reply" in await answer.inner_text()
    assert await answer.locator("strong").inner_text() == "portal"  # Markdown rendered
    meta = await page.locator(".turn.assistant .meta").last.inner_text()
    assert "in," in meta and "out" in meta and "Cost: $0" in meta and "Model: demo-echo" in meta
    assert "Latency:" in meta and "Requests left: 99999" in meta

    timings = await page.evaluate("""() => ({
      firstChunk: performance.getEntriesByName('portal:first-chunk')[0].startTime,
      perFrame: performance.getEntriesByName('portal:chunk-to-screen').map(m => m.duration),
    })""")
    first_on_screen = next(s["t"] for s in seen if s["n"] > 0) - timings["firstChunk"]
    per_frame = timings["perFrame"]
    record_metrics(
        first_load_bytes=first_load["bytes"], first_load_files=first_load["files"],
        first_chunk_to_screen_ms=round(first_on_screen, 1),
        chunk_to_screen_median_ms=round(statistics.median(per_frame), 1),
        chunk_to_screen_max_ms=round(max(per_frame), 1), frames_measured=len(per_frame),
    )
    # The target is 50 ms; the bound is generous because CI shares two cores with others.
    assert first_on_screen < 250 and max(per_frame) < 250, (first_on_screen, per_frame)
    assert first_load["bytes"] < 100_000, first_load

    # Reload: the conversation is still there, and the next message carries it as history.
    await page.reload()
    await page.wait_for_selector(".turn.assistant .meta")
    assert await page.locator(".turn").count() == 2
    assert "Hello **portal**" in await page.locator(".turn.user .body").first.inner_text()
    await send(page, "And again")
    await answered(page, 2)
    assert "(3 message(s) in the conversation)" in await page.locator(
        ".turn.assistant .body").last.inner_text()
    await page.set_viewport_size(PHONE)
    await screenshot(page, "chat-phone")
    await page.set_viewport_size({"width": 1280, "height": 860})
    await screenshot(page, "chat-desktop")
    assert await axe_violations(page) == []

    # Each specialist has its own conversation.
    await page.get_by_label("Specialist", exact=True).select_option(OPENAI)
    assert await page.locator(".turn").count() == 0
    await page.get_by_label("Specialist", exact=True).select_option(DEMO)
    assert await page.locator(".turn").count() == 4

    await page.get_by_role("button", name="Clear conversation").click()
    assert await page.locator(".turn").count() == 0
    assert await page.evaluate("k => localStorage.getItem(k)", STORE_KEY) is None
    await page.reload()
    await page.wait_for_selector("#empty")
    assert await page.locator(".turn").count() == 0
    assert_clean(page)


async def test_stop_cancels_the_stream_and_the_portal_records_the_disconnect(
    portal: Portal, browser: Any
) -> None:
    script = portal.fakes["openai"].script
    script.chunks = [f"word{i} " for i in range(200)]
    script.chunk_delay = 0.05
    page = await open_chat(browser, portal, OPENAI)
    await send(page, "Write a long answer")
    stop = page.get_by_role("button", name="Stop")
    await stop.wait_for()
    await page.wait_for_function(
        "() => document.querySelector('.turn.assistant .body')?.textContent.includes('word2')"
    )
    await stop.click()
    await page.wait_for_selector(".turn.assistant .note")
    assert "Stopped" in await page.inner_text(".turn.assistant .note")
    assert await stop.is_hidden()
    partial = await page.inner_text(".turn.assistant .body")
    assert "word2" in partial and "word199" not in partial

    async def recorded() -> bool:
        rows = await fetch_rows(portal.engine)
        return any(r["error_kind"] == "client_disconnected" for r in rows)

    await eventually(recorded, within=15)
    (row,) = await fetch_rows(portal.engine)
    assert row["success"] is False and row["streamed"] is True
    # The stopped answer is kept, with its note, across a reload.
    await page.reload()
    await page.wait_for_selector(".turn.assistant .note")
    assert "word2" in await page.inner_text(".turn.assistant .body")
    assert_clean(page)


HOSTILE = [
    "# Quarterly report\n\n",
    "<scr", "ipt>window.__pwned = 'script'</script>\n\n",
    '<img src=x onerror="window.__pwned=\'img\'">\n\n',
    "[click me](javascript:window.__pwned='link')\n\n",
    '<a id="evil" href="javascript:window.__pwned=1">evil</a>',
    ' <iframe src="javascript:window.__pwned=2"></iframe>\n\n',
    '<svg onload="window.__pwned=3"><circle r="4"/></svg>',
    '<div id="trap" onclick="window.__pwned=4" style="position:fixed;inset:0">x</div>\n\n',
    '<form action="http://127.0.0.1:9/steal"><input name="password"></form>\n\n',
    '<details open ontoggle="window.__pwned=5"><summary>s</summary></details>\n\n',
    "| quarter | revenue |\n|---|---|\n| Q1 | 10 |\n\n",
    "```html\n<b onclick=\"x()\">not bold</b>\n```\n\n",
    "- first\n- second\n",
]


@pytest.mark.parametrize("csp", ["with CSP", "without CSP"])
async def test_a_hostile_markdown_answer_stays_inert(
    portal: Portal, browser: Any, csp: str
) -> None:
    portal.fakes["openai"].script.chunks = HOSTILE
    # Without the page's CSP, the sanitiser alone must keep every payload from running.
    page = await open_chat(browser, portal, OPENAI, bypass_csp=csp == "without CSP")
    await send(page, "Show me the report")
    await answered(page, 1)
    for attempt in ("first render", "after reload"):
        answer = page.locator(".turn.assistant .body")
        # The Markdown itself is rendered...
        assert await answer.locator("h1").inner_text() == "Quarterly report", attempt
        assert await answer.locator("table td").all_inner_texts() == ["Q1", "10"]
        assert await answer.locator("li").count() == 2
        assert '<b onclick="x()">' in await answer.locator("pre code").inner_text()
        # ...and nothing in it can run, submit or call out.
        dangerous = "script, iframe, svg, img, form, input, style, object, embed"
        assert await answer.locator(dangerous).count() == 0, attempt
        handlers = await page.evaluate("""() => [...document.querySelectorAll('#conversation *')]
          .flatMap(el => [...el.attributes].map(a => a.name)
          .filter(n => n.startsWith('on') || n === 'style'))""")
        assert handlers == [], handlers
        hrefs = await answer.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
        assert not any(h and h.strip().lower().startswith("javascript") for h in hrefs), hrefs
        for link in await answer.locator("a").all():
            await link.click(modifiers=["Alt"])  # Alt: no new tab, the handler would still run
        if await page.locator("#trap").count():
            await page.locator("#trap").click()
        assert await page.evaluate("() => window.__pwned") is None, attempt
        await page.reload()
        await page.wait_for_selector(".turn.assistant .meta")
    assert page.uncaught == []
    if csp == "without CSP":
        assert_clean(page)
    # With it, Chromium reports (and blocks) the handlers it meets while DOMPurify parses
    # the answer in its inert document: the report is of nothing that could have run.


async def test_keyboard_only_use_and_escape_stops(portal: Portal, browser: Any) -> None:
    page = await new_page(browser)
    await page.goto(portal.url + "/")
    await page.wait_for_function("() => !document.getElementById('specialist').disabled")
    order = []
    for _ in range(8):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("""() => {
          const el = document.activeElement, style = getComputedStyle(el);
          return {id: el.id || el.textContent.trim(), outline: style.outlineStyle,
                  width: parseFloat(style.outlineWidth)};
        }""")
        order.append(focused["id"])
        # Focus is always visible: a 3 px outline on whatever has it.
        assert focused["outline"] != "none" and focused["width"] >= 2, focused
        if focused["id"] == "specialist":
            await page.keyboard.press("End")  # the last option: the demo specialist
        if focused["id"] == "message":
            break
    assert order.index("specialist") < order.index("message"), order
    assert await page.eval_on_selector("#specialist", "s => s.value") == DEMO
    await page.keyboard.type("line one")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("line two")
    assert await page.input_value("#message") == "line one\nline two"
    await page.keyboard.press("Enter")
    await answered(page, 1)
    assert await page.inner_text(".turn.user .body") == "line one\nline two"
    assert await page.evaluate("() => document.activeElement.id") == "message"

    await page.keyboard.type("now stop")
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        "() => document.querySelectorAll('.turn.assistant .body')[1]?.textContent.length > 0"
    )
    await page.keyboard.press("Escape")
    await page.wait_for_selector(".turn.assistant .note")
    assert "Stopped" in await page.inner_text(".turn.assistant .note")
    assert await page.get_by_role("button", name="Stop").is_hidden()
    assert_clean(page)
