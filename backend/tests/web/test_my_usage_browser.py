"""The chat page's "My usage" panel: the user's own requests, tokens and cost this month
(GET /me/usage), with no budget that applies, updated after an answer, and never another user's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.budgets.periods import period_at
from backend.tests.usage.helpers import make_record
from backend.tests.usage.portal import SPECIALISTS, running_portal
from backend.tests.web.browser import assert_clean, axe_violations, new_page
from backend.tests.web.chat_page import answered, send
from backend.usage.identity import hash_email
from backend.usage.store import insert_batch

ALICE = "alice@example.com"


def _panel_says(text: str) -> str:
    return f"() => document.getElementById('my-usage').textContent.includes({text!r})"


async def test_my_usage_shows_my_own_spend_and_follows_my_answers(
    tmp_path: Path, browser: Any
) -> None:
    # AUTH_MODE=header: the page sits behind a front end that names the user (here the
    # browser sends the header itself, from a trusted address); no budget applies to her.
    async with running_portal(
        tmp_path, f"sqlite:///{tmp_path / 'u.db'}", auth_mode="header",
        trusted_frontends=["127.0.0.0/8"],
    ) as portal:
        now = datetime.now(UTC)
        month = period_at(now, "month", "UTC")
        when = month.start + (now - month.start) / 2
        secret = portal.settings.hash_secret()
        await insert_batch(portal.engine, [
            make_record(user_email_hash=hash_email(secret, ALICE), timestamp=when,
                        input_tokens=100, output_tokens=40, estimated_cost_usd=0.25),
            make_record(user_email_hash=hash_email(secret, "bob@example.com"), timestamp=when,
                        input_tokens=5000, output_tokens=900, estimated_cost_usd=3.0),
        ])
        page = await new_page(browser)
        await page.set_extra_http_headers({"X-User-Email": ALICE})
        await page.goto(portal.url + "/")
        await page.wait_for_selector("#my-usage:not([hidden])")
        panel = await page.inner_text("#my-usage")
        assert "Spent this month" in panel and "$0.25 on 1 request" in panel, panel
        assert "100 in, 40 out" in panel and "No spending limit applies to you" in panel
        assert "$3" not in panel and "5,000" not in panel

        # An answer from the priced fake (11 tokens in, 7 out): the panel catches up.
        await page.wait_for_function("() => !document.getElementById('specialist').disabled")
        await page.get_by_label("Specialist", exact=True).select_option(SPECIALISTS["openai"])
        await send(page, "hello")
        await answered(page, 1)
        await page.wait_for_function(_panel_says("on 2 requests"))
        panel = await page.inner_text("#my-usage")
        assert "111 in, 47 out" in panel, panel
        assert await axe_violations(page) == []
        assert_clean(page)
