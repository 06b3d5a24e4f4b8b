"""The pages over plain HTTP: security headers, no inline script, versioned cached assets."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from backend.tests.usage.portal import Portal, running_portal
from backend.web.assets import AssetBundle
from backend.web.router import CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("path", ["/", "/ui/usage"])
async def test_pages_carry_strict_security_headers(portal: Portal, path: str) -> None:
    response = await portal.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'" and directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-cache"
    html = response.text
    # Every script is a file of this origin: no inline script, no handler attributes.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all('src="/ui/assets/' in attrs and body == "" for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+=", html)
    assert "{{" not in html


async def test_assets_are_versioned_and_cached_for_a_year(portal: Portal) -> None:
    html = (await portal.client.get("/")).text
    urls = re.findall(r'(?:src|href)="(/ui/assets/[^"]+)"', html)
    assert len(urls) >= 4
    version = AssetBundle.load().version
    for url in urls:
        assert url.startswith(f"/ui/assets/{version}/")
        response = await portal.client.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    module = await portal.client.get(f"/ui/assets/{version}/js/chat.js")
    assert module.headers["content-type"] == "text/javascript; charset=utf-8"
    # An old version's URL is not served the new file under the old name.
    stale = await portal.client.get("/ui/assets/0000000000000000/js/chat.js")
    assert stale.status_code == 404 and stale.json()["error"] == "not_found"
    # Only files read from the static folder exist: no path reaches outside it.
    assert AssetBundle.load().get(version, "../pages.py") is None
    missing = await portal.client.get(f"/ui/assets/{version}/js/nothing.js")
    assert missing.status_code == 404


async def test_assets_are_gzipped_for_clients_that_accept_it(portal: Portal) -> None:
    version = AssetBundle.load().version
    url = f"/ui/assets/{version}/vendor/marked.esm.js"
    plain = await portal.client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    raw = await portal.client.send(
        portal.client.build_request("GET", url, headers={"Accept-Encoding": "gzip"}), stream=True
    )
    packed = b"".join([part async for part in raw.aiter_raw()])
    await raw.aclose()
    assert raw.headers["content-encoding"] == "gzip" and "Accept-Encoding" in raw.headers["vary"]
    assert len(packed) < len(plain.content) / 2
    assert gzip.decompress(packed) == plain.content


def test_the_version_changes_with_any_file(tmp_path: Path) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "a.js").write_text("export const a = 1;")
    first = AssetBundle.load(tmp_path)
    (tmp_path / "js" / "a.js").write_text("export const a = 2;")
    assert AssetBundle.load(tmp_path).version != first.version
    (tmp_path / "notes.md").write_text("not a served type")
    assert "notes.md" not in AssetBundle.load(tmp_path).files


async def test_the_chat_page_carries_the_configured_limits(tmp_path: Path) -> None:
    async with running_portal(
        tmp_path, f"sqlite:///{tmp_path / 'u.db'}", max_message_chars=1234,
        max_history_messages=7,
    ) as portal:
        html = (await portal.client.get("/")).text
    assert 'data-max-message-chars="1234"' in html and 'data-max-history-messages="7"' in html
