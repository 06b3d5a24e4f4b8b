"""GET /, /ui/usage and /ui/assets/...: the portal's pages, with strict security headers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from backend.errors import PortalError
from backend.web.assets import PREFIX, Asset
from backend.web.pages import WebPages

router = APIRouter(include_in_schema=False)

# No inline script or style, no eval, nothing from another origin, never framed. The
# pages only call this origin's own API (connect-src), as the external front ends do.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors' older spelling
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
# Pages are revalidated every time (they name the current asset version); assets never are.
PAGE_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=31536000, immutable"


class AssetNotFound(PortalError):
    """No asset of that name under that version (an old page, or a wrong URL)."""

    code = "not_found"


def _pages(request: Request) -> WebPages:
    pages: WebPages = request.app.state.web_pages
    return pages


def _respond(request: Request, asset: Asset, cache: str) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, "Vary": "Accept-Encoding"}
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=asset.media_type, headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
async def chat_page(request: Request) -> Response:
    """The chat: pick a specialist, talk to it, see what each answer cost."""
    return _respond(request, _pages(request).chat, PAGE_CACHE)


@router.api_route("/ui/usage", methods=["GET", "HEAD"])
async def usage_page(request: Request) -> Response:
    """The usage dashboard (its data comes from /usage/*, behind the admin token)."""
    return _respond(request, _pages(request).usage, PAGE_CACHE)


@router.api_route(PREFIX + "/{version}/{name:path}", methods=["GET", "HEAD"])
async def asset(request: Request, version: str, name: str) -> Response:
    """One static file of the current version, cacheable for a year."""
    found = _pages(request).assets.get(version, name)
    if found is None:
        raise AssetNotFound("no such asset")
    return _respond(request, found, ASSET_CACHE)
