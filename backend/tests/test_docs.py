"""/docs and /redoc work on a closed network; /openapi.json lists only routes that exist."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from backend.tests.support import make_settings, run_app

ADMIN_TOKEN = "docs-test-admin-token-0123"


@pytest.mark.parametrize(("page", "script"), [("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")])
async def test_the_docs_pages_load_only_assets_the_app_serves(
    tmp_path: Path, page: str, script: str
) -> None:
    async with run_app(make_settings(tmp_path)) as url, httpx.AsyncClient(base_url=url) as client:
        html = (await client.get(page)).text
        links = re.findall(r'(?:src|href)="([^"]+)"', html)
        assets = {link: await client.get(link) for link in links}
    assert not re.search(r"https?://|//[a-z]", html, re.IGNORECASE), "an external URL"
    scripts = [link for link in links if link.endswith(".js")]
    assert scripts and all(link.startswith("/") for link in links)
    for link, response in assets.items():
        assert response.status_code == 200, link
        assert len(response.content) > 1000, link
    assert any(script in assets[link].text for link in scripts)
    if page == "/docs":
        assert any(link.endswith(".css") for link in links)
        assert '"validatorUrl": null' in html  # the validator badge would call swagger.io


async def test_usage_routes_are_in_the_schema_only_while_they_exist(tmp_path: Path) -> None:
    paths = {}
    for token in (None, ADMIN_TOKEN):
        settings = make_settings(tmp_path, admin_token=token)
        async with run_app(settings) as url, httpx.AsyncClient(base_url=url) as client:
            paths[token] = set((await client.get("/openapi.json")).json()["paths"])
            status = (await client.get("/usage/status")).status_code
        assert status == (404 if token is None else 401)
    usage = {"/usage/summary", "/usage/export", "/usage/status"}
    assert not paths[None] & usage
    assert usage <= paths[ADMIN_TOKEN]
    assert "/chat/send" in paths[None]
