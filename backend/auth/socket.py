"""Identity on a WebSocket: the Authorization header, or a first `{"type": "auth"}` message.

Browsers cannot set headers on a WebSocket, and a token in the URL ends up in access logs,
so under AUTH_MODE=jwt a socket without the header has AUTH_TIMEOUT_SECONDS to send
`{"type": "auth", "token": "..."}`. A socket whose token expires is closed with a message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import orjson
from fastapi import WebSocket

from backend.auth.authenticator import Authenticator
from backend.auth.errors import TokenExpired, TokenMissing
from backend.auth.identity import Identity
from backend.errors import PortalError

AUTH_TIMEOUT_SECONDS = 5.0


def auth_token(payload: str | bytes) -> object | None:
    """The token of an `{"type": "auth", "token": ...}` message; None for any other message."""
    if b'"auth"' not in (payload.encode() if isinstance(payload, str) else payload):
        return None  # cheap test first: chat messages pass here on every turn
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict) and data.get("type") == "auth":
        token: object = data.get("token", "")
        return token
    return None


async def authenticate_socket(websocket: WebSocket, auth: Authenticator) -> Identity | None:
    """The accepted socket's identity (None when the client left first); an AuthError when
    the credentials are missing or bad, which the route sends before closing."""
    # A signed-in browser's socket carries its session cookie (and an Origin, checked).
    cookie = auth.sessions is not None and auth.sessions.session_id(websocket) is not None
    if auth.mode == "jwt" and "authorization" not in websocket.headers and not cookie:
        token = await _first_message_token(websocket)
        if token is None:
            return None
        return await auth.identify(websocket, token=token)
    return await auth.identify(websocket)


async def _first_message_token(websocket: WebSocket) -> str | None:
    try:
        async with asyncio.timeout(AUTH_TIMEOUT_SECONDS):
            message = await websocket.receive()
    except TimeoutError:
        raise TokenMissing(
            'send {"type": "auth", "token": "..."} first, within 5 seconds of connecting'
        ) from None
    if message["type"] == "websocket.disconnect":
        return None
    payload = message.get("text") or message.get("bytes") or b""
    token = auth_token(payload)
    if not isinstance(token, str) or not token:
        raise TokenMissing('the first message must be {"type": "auth", "token": "..."}')
    return token


async def close_at_expiry(
    expires_at: float, refuse: Callable[[PortalError], Awaitable[None]]
) -> None:
    """Sleep until the proof expires, then refuse the socket with a clear message."""
    await asyncio.sleep(max(0.0, expires_at - time.time()))
    await refuse(TokenExpired(
        'the token has expired; send {"type": "auth", "token": "..."} with a fresh one '
        "before it does, or reconnect"
    ))
