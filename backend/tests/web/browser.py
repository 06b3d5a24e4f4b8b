"""Headless Chromium for the page tests: Debian's own binary, driven by Playwright.

Playwright's browser download does not work here, so the tests launch /usr/bin/chromium.
Without it (or without Playwright) the tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from backend.tests.support import IN_CI

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "var" / "screenshots"
METRICS = ROOT / "var" / "web-metrics.json"
AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"browser tests must run in CI: {reason} (.ci/run installs it)")
    pytest.skip(reason)


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A launched headless Chromium (a Playwright Browser)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    if not shutil.which(CHROMIUM):  # an absolute path: is it an executable file
        _missing(f"no Chromium at {CHROMIUM}")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(
    browser: Any, viewport: dict[str, int] = DESKTOP, *, bypass_csp: bool = False
) -> Any:
    """A page in a fresh context that collects every script error and CSP refusal."""
    context = await browser.new_context(
        viewport=viewport, accept_downloads=True, bypass_csp=bypass_csp
    )
    context.set_default_timeout(15_000)  # fail in seconds, not Playwright's 30
    page = await context.new_page()
    page.errors = []  # uncaught exceptions and CSP refusals, checked by `assert_clean`
    page.uncaught = []  # uncaught exceptions only
    page.on("pageerror", lambda exc: page.uncaught.append(str(exc)))
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    # A refused status (the /me probe's 404, a 429) logs "Failed to load resource": not a fault.
    page.on("console", lambda msg: msg.type == "error"
            and not msg.text.startswith("Failed to load resource")
            and page.errors.append(msg.text))
    return page


def assert_clean(page: Any) -> None:
    """No script error and no CSP refusal happened on the page."""
    assert page.errors == [], page.errors


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    # evaluate() runs through the debugger protocol, which the page's CSP does not govern:
    # the page itself still may not run inline script.
    await page.evaluate(AXE + "\n;0")
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


async def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot under var/screenshots/ (git-ignored, kept by CI)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def record_metrics(**figures: Any) -> None:
    """Merge measured figures into var/web-metrics.json and print them (pytest -s shows)."""
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(METRICS.read_text()) if METRICS.exists() else {}
    current.update(figures)
    METRICS.write_text(json.dumps(current, indent=2, sort_keys=True))
    print("web metrics:", json.dumps(figures, sort_keys=True))
