"""/docs and /redoc work on a closed network; /openapi.json lists exactly the routes that answer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from backend.main import create_app
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


# (settings, credentials sent): combinations that add or remove routes.
COMBINATIONS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "defaults (AUTH_MODE=none, no admin)": ({}, {}),
    "admin token, budgets and metrics off": (
        {"admin_token": ADMIN_TOKEN, "budget_backend": "off", "metrics_enabled": False},
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ),
    "header auth, admin groups, metrics token": (
        {"auth_mode": "header", "frontend_shared_secret": "s" * 32,
         "admin_groups": ["portal-admins"], "metrics_token": "metrics-token-0123456789"},
        {},
    ),
}
# Not operations of the API: the document's own pages, the portal's web pages, and the
# WebSocket (OpenAPI cannot describe it; docs/transports.md does).
NOT_OPERATIONS = ("/openapi.json", "/docs", "/redoc", "/static-offline-docs", "/ui/", "/")


def _operations(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every HTTP route the app serves, the pages excepted."""
    found = set()
    for route in iter_route_contexts(app.routes):
        path, methods = route.path_format, getattr(route, "methods", None)
        if path is None or not methods:
            continue  # the WebSocket, the docs' static mount
        if path == "/" or any(path.startswith(p) for p in NOT_OPERATIONS if p != "/"):
            continue
        found |= {(method, path) for method in methods - {"HEAD"}}
    return found


def _concrete(path: str) -> str:
    # Any value: a route that exists answers it (2xx, 401, 422, or its own not-found error).
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.mark.parametrize("combination", COMBINATIONS)
async def test_the_document_lists_exactly_the_operations_that_answer(
    tmp_path: Path, combination: str
) -> None:
    """A route answering 404 as if absent (the framework's `http_404`) is not listed, and
    every other one is, under each combination of settings that adds or removes routes."""
    overrides, headers = COMBINATIONS[combination]
    settings = make_settings(tmp_path, **overrides)
    operations = _operations(create_app(settings))
    assert ("POST", "/keys") in operations and ("DELETE", "/admin/keys/{key_id}") in operations
    absent, listed = set(), set()
    async with run_app(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        document = (await client.get("/openapi.json")).json()
        listed = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
        for method, path in sorted(operations):
            response = await client.request(
                method, _concrete(path), headers=headers,
                json={} if method in ("POST", "PUT", "PATCH") else None,
            )
            if response.status_code == 404 and response.json()["error"] == "http_404":
                absent.add((method, path))
    assert listed <= operations, "the document lists what the app does not serve"
    assert listed == operations - absent, (
        f"listed but absent: {sorted(listed & absent)}; "
        f"answering but unlisted: {sorted(operations - absent - listed)}"
    )


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
