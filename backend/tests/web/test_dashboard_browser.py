"""The usage dashboard in headless Chromium: its figures are /usage/summary's, to the cent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backend.tests.usage.helpers import ADMIN_TOKEN, make_record
from backend.tests.usage.portal import Portal, running_portal
from backend.tests.web.browser import (
    PHONE,
    assert_clean,
    axe_violations,
    new_page,
    screenshot,
)
from backend.usage.store import insert_batch

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SPECS = [("s-1", "Analyst", "anthropic", "claude-sonnet-4-5"),
         ("s-2", "Helper", "openai", "gpt-4o"), ("s-3", "Sheets", "google", "gemini-2.5-flash")]
USERS = ["a" * 64, "b" * 64, "c" * 64, None]


@pytest.fixture
async def spend(portal: Portal) -> Portal:
    """Forty records over the last ten days: three specialists, four users, some failures."""
    now = datetime.now(UTC)
    records = []
    for i in range(40):
        spec_id, name, provider, model = SPECS[i % 3]
        records.append(make_record(
            timestamp=now - timedelta(hours=5 + 6 * i), specialist_id=spec_id,
            specialist_name=name, provider=provider, model=model,
            user_email_hash=USERS[i % 4], input_tokens=100 + i, output_tokens=50 + i,
            estimated_cost_usd=None if i % 10 == 9 else 0.0125 * (1 + i % 5),
            latency_ms=100.0 + 37 * i, success=i % 7 != 0,
            error_kind=None if i % 7 else "upstream_unavailable",
        ))
    await insert_batch(portal.engine, records)
    return portal


async def _summary(portal: Portal, group_by: str, days: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    response = await portal.client.get("/usage/summary", headers=ADMIN, params={
        "group_by": group_by, "from": (now - timedelta(days=days)).isoformat(),
        "to": now.isoformat(),
    })
    body: dict[str, Any] = response.json()
    return body


async def _sign_in(page: Any, portal: Portal, token: str = ADMIN_TOKEN) -> None:
    await page.goto(portal.url + "/ui/usage")
    await page.get_by_label("Admin token", exact=True).fill(token)
    await page.get_by_role("button", name="Show usage").click()


async def _shown_totals(page: Any) -> dict[str, str]:
    await page.wait_for_selector("#totals dd")
    cells = await page.locator("#totals dd").evaluate_all(
        "dds => dds.map(d => [d.dataset.field, d.dataset.value])"
    )
    return dict(cells)


def _same_totals(shown: dict[str, str], totals: dict[str, Any]) -> None:
    for field in ("requests", "failures", "input_tokens", "output_tokens", "unpriced_requests"):
        assert int(shown[field]) == totals[field], field
    assert float(shown["cost_usd"]) == pytest.approx(totals["cost_usd"], rel=1e-12)
    for field in ("latency_p50_ms", "latency_p95_ms"):
        assert float(shown[field]) == totals[field], field


async def test_the_dashboard_shows_the_summary_s_figures(
    spend: Portal, browser: Any, tmp_path: Path
) -> None:
    portal = spend
    page = await new_page(browser)
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    await _sign_in(page, portal)
    expected = await _summary(portal, "day", 30)
    assert expected["totals"]["requests"] == 40
    _same_totals(await _shown_totals(page), expected["totals"])
    # Spend per day: one bar per day of the range, each the summary's figure for that day.
    bars = dict(await page.locator("#daily-chart rect").evaluate_all(
        "rs => rs.map(r => [r.dataset.label, Number(r.dataset.value)])"
    ))
    assert len(bars) in (30, 31)
    by_day = {g["key"]: g["cost_usd"] for g in expected["groups"]}
    assert len(by_day) >= 10 and set(by_day) <= set(bars)  # 40 records, 6 hours apart
    for day, cost in bars.items():
        assert cost == pytest.approx(by_day.get(day, 0.0), rel=1e-12), day

    # By specialist: one table row per group, with its requests and spend.
    specialists = (await _summary(portal, "specialist", 30))["groups"]
    rows = page.locator("#breakdown-table tbody tr")
    assert await rows.count() == len(specialists) == 3
    first = await rows.first.locator("th, td").all_inner_texts()
    top = max(specialists, key=lambda g: g["cost_usd"])  # sorted by spend at first
    assert first[0] == top["label"] and first[1] == str(top["requests"])
    chart = dict(await page.locator("#breakdown-chart rect").evaluate_all(
        "rs => rs.map(r => [r.dataset.label, Number(r.dataset.value)])"
    ))
    assert chart == pytest.approx({g["label"]: g["cost_usd"] for g in specialists}, rel=1e-12)
    # Sorting by a header: aria-sort says how, and the rows follow.
    header = page.locator("#breakdown-table th", has_text="Requests")
    await header.get_by_role("button").click()
    assert await header.get_attribute("aria-sort") == "descending"
    counts = [int(c) for c in await page.locator(
        "#breakdown-table tbody tr td:nth-child(2)").all_inner_texts()]
    assert counts == sorted(counts, reverse=True)
    await header.get_by_role("button").click()
    assert await header.get_attribute("aria-sort") == "ascending"
    # Other breakdowns come from their own summaries.
    await page.get_by_label("Breakdown", exact=True).select_option("model")
    assert await rows.count() == 3
    assert "gpt-4o" in await page.inner_text("#breakdown-table")

    # Failure rate and latency per specialist, as the summary has them.
    reliability = await page.inner_text("#reliability-table")
    for group in specialists:
        assert group["label"] in reliability
        assert f"{100 * group['failures'] / group['requests']:.1f} %" in reliability
    # Top users by spend: hashes only, highest first.
    users = (await _summary(portal, "user", 30))["groups"]
    richest = max((g for g in users if g["key"]), key=lambda g: g["cost_usd"])
    first_user = await page.locator("#users-table tbody tr").first.inner_text()
    assert richest["key"][:12] in first_user or "Anonymous" in first_user

    await screenshot(page, "dashboard-desktop")
    assert await axe_violations(page) == []

    # The CSV download is the export of the range, fetched with the header.
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download CSV").click()
    download = await download_info.value
    saved = tmp_path / "download.csv"
    await download.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0].startswith("id,timestamp,user_email_hash") and len(lines) == 41
    assert download.suggested_filename.startswith("usage-")

    # The token never travelled in a URL and lives only in this tab's session storage.
    assert urls and not any(ADMIN_TOKEN in url for url in urls)
    stored = await page.evaluate("() => [sessionStorage.getItem('portal.adminToken'),"
                                 " JSON.stringify(localStorage)]")
    assert stored[0] == ADMIN_TOKEN and ADMIN_TOKEN not in stored[1]
    assert await page.input_value("#admin-token") == ""
    assert_clean(page)


async def test_the_time_range_narrows_the_figures(spend: Portal, browser: Any) -> None:
    page = await new_page(browser, PHONE)
    await _sign_in(page, spend)
    await _shown_totals(page)
    await screenshot(page, "dashboard-phone")  # drawn at a phone's width
    assert await axe_violations(page) == []
    await page.get_by_label("Time range", exact=True).select_option("1")
    await page.wait_for_function(
        "() => document.getElementById('range-label').textContent && "
        "document.querySelector('#daily-chart rect') && "
        "document.querySelectorAll('#daily-chart rect').length <= 2"
    )
    expected = (await _summary(spend, "day", 1))["totals"]
    assert 0 < expected["requests"] < 40
    _same_totals(await _shown_totals(page), expected)

    # Custom dates: whole UTC days, the end date included.
    today = datetime.now(UTC).date()
    start = today - timedelta(days=3)
    await page.get_by_label("Time range", exact=True).select_option("custom")
    await page.get_by_label("From", exact=True).fill(start.isoformat())
    await page.get_by_label("To (inclusive)", exact=True).fill(today.isoformat())
    await page.get_by_role("button", name="Apply").click()
    await page.wait_for_function(
        "() => document.querySelectorAll('#daily-chart rect').length === 4"
    )
    response = await spend.client.get("/usage/summary", headers=ADMIN, params={
        "from": start.isoformat(), "to": (today + timedelta(days=1)).isoformat(),
    })
    _same_totals(await _shown_totals(page), response.json()["totals"])
    assert_clean(page)


async def test_a_wrong_token_is_a_sentence_and_is_forgotten(spend: Portal, browser: Any) -> None:
    page = await new_page(browser)
    await _sign_in(page, spend, token="not-the-token")
    await page.wait_for_selector("#notice:not([hidden])")
    assert await page.inner_text("#notice") == "The admin token was not accepted. Enter it again."
    assert await page.evaluate("() => sessionStorage.getItem('portal.adminToken')") is None
    assert await page.locator("#report").is_hidden()


async def test_without_admin_token_the_page_says_reports_are_off(
    tmp_path: Path, browser: Any
) -> None:
    async with running_portal(
        tmp_path, f"sqlite:///{tmp_path / 'u.db'}", admin_token=None
    ) as portal:
        page = await new_page(browser)
        await _sign_in(page, portal, token="anything")
        await page.wait_for_selector("#notice:not([hidden])")
        assert await page.inner_text("#notice") == (
            "Usage reports are switched off on this portal: the server has no ADMIN_TOKEN set."
        )
        assert await page.locator("#report").is_hidden()
