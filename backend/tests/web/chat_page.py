"""Driving the chat page: open it, pick a specialist, send, watch an answer arrive."""

from __future__ import annotations

from typing import Any

from backend.tests.usage.portal import Portal
from backend.tests.web.browser import DESKTOP, new_page

# Records, in page time, each length the streaming answer's text reaches.
WATCH_ANSWER = """() => {
  window.__seen = [];
  const log = document.getElementById('conversation');
  new MutationObserver(() => {
    const turns = log.querySelectorAll('.turn.assistant .body');
    const body = turns[turns.length - 1];
    if (!body) return;
    const n = body.textContent.length, seen = window.__seen;
    if (!seen.length || seen[seen.length - 1].n !== n) seen.push({t: performance.now(), n});
  }).observe(log, {subtree: true, childList: true, characterData: true});
}"""


async def open_chat(
    browser: Any, portal: Portal, specialist: str, viewport: dict[str, int] = DESKTOP,
    *, bypass_csp: bool = False,
) -> Any:
    """The chat page with `specialist` picked and its list loaded."""
    page = await new_page(browser, viewport, bypass_csp=bypass_csp)
    await page.goto(portal.url + "/")
    picker = page.get_by_label("Specialist", exact=True)
    await picker.wait_for()
    await page.wait_for_function("() => !document.getElementById('specialist').disabled")
    await picker.select_option(specialist)
    return page


async def send(page: Any, text: str) -> None:
    """Type a message and press Enter, as a user would."""
    box = page.get_by_label("Message", exact=True)
    await box.fill(text)
    await box.press("Enter")


async def answered(page: Any, turns: int) -> None:
    """Wait until `turns` answers carry their closing figures."""
    await page.wait_for_function(
        f"() => document.querySelectorAll('.turn.assistant .meta').length >= {turns}"
    )


async def notice(page: Any) -> str:
    """The alert's sentence, once one is shown."""
    await page.wait_for_selector("#notice:not([hidden])")
    text: str = await page.inner_text("#notice")
    return text
