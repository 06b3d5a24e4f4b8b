"""The seed's limits shown as the user nears them, and the sign-in areas shown only when
the portal has identities (GET /me answers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.tests.usage.portal import SPECIALISTS, Portal, running_portal
from backend.tests.web.browser import assert_clean
from backend.tests.web.chat_page import answered, open_chat, send

DEMO = SPECIALISTS["demo"]


async def test_the_page_warns_near_each_limit_and_holds_back_what_would_be_refused(
    tmp_path: Path, browser: Any
) -> None:
    async with running_portal(
        tmp_path, f"sqlite:///{tmp_path / 'u.db'}", max_message_chars=400,
        max_history_messages=2, max_total_chars=100_000,
    ) as portal:
        page = await open_chat(browser, portal, DEMO)
        box, send_button = page.get_by_label("Message", exact=True), page.locator("#send")
        await box.fill("x" * 300)
        assert await page.inner_text("#limits") == ""
        await box.fill("x" * 330)
        assert await page.inner_text("#limits") == "330 of 400 characters allowed in one message."
        await box.fill("x" * 401)
        assert "accepts at most 400" in await page.inner_text("#limits")
        assert await send_button.is_disabled()
        await send(page, "short one")
        await answered(page, 1)
        # Two earlier messages now: at the limit, still accepted by the server.
        assert "2 of 2 earlier messages" in await page.inner_text("#limits")
        await send(page, "short two")
        await answered(page, 2)
        assert "reached the portal's limit of 2 earlier messages" in await page.inner_text(
            "#limits")
        await box.fill("one more")
        assert await send_button.is_disabled()
        await page.get_by_role("button", name="Clear conversation").click()
        assert await page.inner_text("#limits") == "" and await send_button.is_enabled()
        assert_clean(page)


async def test_identity_areas_stay_hidden_until_me_answers(portal: Portal, browser: Any) -> None:
    page = await open_chat(browser, portal, DEMO)
    # AUTH_MODE=none: /me says nobody is signed in, so nothing about signing in shows.
    me_now = await portal.client.get("/me")
    assert me_now.status_code == 200 and me_now.json()["auth_method"] == "none"
    assert await page.locator("#identity").is_hidden()
    assert await page.locator("#my-usage").is_hidden()

    async def me(route: Any) -> None:
        await route.fulfill(status=200, content_type="application/json",
                            body=json.dumps({"name": "Ada <b>Lovelace</b>", "groups": ["fin"],
                                             "auth_method": "jwt"}))

    async def budget(route: Any) -> None:
        await route.fulfill(status=200, content_type="application/json",
                            body=json.dumps({"enabled": True, "period": "2026-12", "budgets": [{
                                "scope": "user", "name": None, "limit_usd": 50,
                                "spent_usd": 12.5, "reserved_usd": 0, "remaining_usd": 37.5,
                                "resets_at": "2027-01-01T00:00:00Z"}]}))

    await page.route("**/me", me)
    await page.route("**/me/budget", budget)
    await page.reload()
    await page.wait_for_selector("#my-usage:not([hidden])")
    # Text, never markup: a name is shown as typed.
    assert await page.inner_text("#identity") == "Signed in as Ada <b>Lovelace</b>"
    assert "$12.5 of $50 spent, $37.5 left" in await page.inner_text("#my-usage")
    assert await page.locator("#sign-in").is_hidden()  # no sign-in under AUTH_MODE=none
