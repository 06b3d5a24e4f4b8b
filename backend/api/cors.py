"""CORS that costs a request without an Origin header (every API client but a browser) almost
nothing: no header objects built, one plain `send` wrapper that adds `Vary: Origin` exactly
as Starlette's CORSMiddleware would. Requests with an Origin go to Starlette's, unchanged."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send


class LeanCORSMiddleware(CORSMiddleware):
    """Starlette's CORSMiddleware, with a fast path for requests that carry no Origin."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Browsers' requests (and preflights) as Starlette does them; others add Vary."""
        if scope["type"] != "http" or any(name == b"origin" for name, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def vary_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_vary_origin(message.get("headers", ()))
            await send(message)

        await self.app(scope, receive, vary_origin)


def with_vary_origin(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with "Origin" joined to Vary, as Starlette's `headers["Vary"] = ...` does:
    the values of every Vary header and "Origin" in one, where the first Vary was."""
    out: list[tuple[bytes, bytes]] = list(headers)
    found = [i for i, (name, _) in enumerate(out) if name == b"vary"]
    if not found:
        out.append((b"vary", b"Origin"))
        return out
    joined = b", ".join([*(out[i][1] for i in found), b"Origin"])
    out[found[0]] = (b"vary", joined)
    for i in reversed(found[1:]):
        del out[i]
    return out
