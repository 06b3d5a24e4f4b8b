"""Browser sign-in: /auth/login, /auth/callback, /auth/logout and /auth/session (thin).

Only with AUTH_MODE=jwt and OIDC_CLIENT_ID; otherwise the first three answer 404 and
/auth/session says sign-in is not available. The browser only ever holds a random session
id in an HttpOnly cookie and, from /auth/session, the session's CSRF token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from backend.api.deps import ServicesDep
from backend.api.openapi import error_responses
from backend.auth.errors import AuthError
from backend.auth.sessions import BrowserSessions, CookiePolicy

router = APIRouter(prefix="/auth", tags=["sign-in"])
# GET /auth/session answers in every mode (it tells the page whether sign-in is offered);
# the flow's own routes exist only while sign-in is configured.
session_router = APIRouter(prefix="/auth", tags=["sign-in"])
_NO_STORE = {"Cache-Control": "no-store"}


def _sessions(services: ServicesDep) -> BrowserSessions:
    sessions = services.auth.sessions
    if sessions is None:
        raise StarletteHTTPException(404, "Not Found")  # sign-in is not configured
    return sessions


def _set(response: Response, cookies: CookiePolicy, name: str, value: str, max_age: int) -> None:
    # HttpOnly: no page script reads it; Lax: sent on the provider's top-level redirect back
    # (and on same-site requests), never on another site's POST or subresource request.
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=cookies.secure, httponly=True,
        samesite="lax",
    )


def _clear(response: Response, cookies: CookiePolicy, name: str) -> None:
    response.delete_cookie(name, path="/", secure=cookies.secure, httponly=True, samesite="lax")


@router.get("/login", response_class=RedirectResponse, status_code=303, responses={
    303: {"description": "To the identity provider's sign-in page"},
    404: {"description": "Sign-in is not configured"},
})
async def login(
    request: Request, services: ServicesDep,
    next: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """Start signing in: to the provider, with state, nonce and an S256 PKCE challenge."""
    sessions = _sessions(services)
    url, state = await sessions.begin(request, next)
    response = RedirectResponse(url, status_code=303, headers=_NO_STORE)
    _set(response, sessions.cookies, sessions.cookies.login_name, state, 600)
    return response


@router.get("/callback", response_class=RedirectResponse, status_code=303,
            responses=error_responses({400: "The sign-in could not be completed"}))
async def callback(
    request: Request, services: ServicesDep,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    state: Annotated[str | None, Query(max_length=256)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """The provider sends the browser back here: trade the code, start the session."""
    sessions = _sessions(services)
    cookies = sessions.cookies
    session_id, return_to = await sessions.finish(
        request, code=code, state=state, error=error,
        state_cookie=request.cookies.get(cookies.login_name),
    )
    response = RedirectResponse(return_to, status_code=303, headers=_NO_STORE)
    _clear(response, cookies, cookies.login_name)
    _set(response, cookies, cookies.session_name, session_id, int(cookies.lifetime))
    return response


class SignedOut(BaseModel):
    """Where the browser goes next to sign out at the provider too (None: it has no such page)."""

    end_session_url: str | None


@router.post("/logout", response_model=SignedOut, responses=error_responses({
    403: "Not from the portal's own page (Origin or X-CSRF-Token)",
    404: "Sign-in is not configured",
}))
async def logout(request: Request, services: ServicesDep) -> Response:
    """End the session here (and its refresh token at the provider); say where to end it there."""
    sessions = _sessions(services)
    session_id = sessions.session_id(request)
    end_url = None
    if session_id is not None:
        sessions.check_request_origin(request, session_id)  # a forged sign-out is refused too
        end_url = await sessions.end(request, session_id)
    response = Response(
        SignedOut(end_session_url=end_url).model_dump_json(), media_type="application/json",
        headers=_NO_STORE,
    )
    _clear(response, sessions.cookies, sessions.cookies.session_name)
    return response


class SessionState(BaseModel):
    """What the page needs to offer sign-in or sign-out; never a token."""

    sign_in_available: bool = Field(description="AUTH_MODE=jwt with OIDC_CLIENT_ID")
    signed_in: bool
    csrf_token: str | None = Field(
        description="Send as X-CSRF-Token on every unsafe request the session cookie authenticates"
    )
    login_url: str | None
    logout_url: str | None


@session_router.get("/session", response_model=SessionState)
async def session_state(request: Request, services: ServicesDep) -> Response:
    """Whether this browser can sign in, whether it is, and its CSRF token."""
    sessions = services.auth.sessions
    state = SessionState(
        sign_in_available=False, signed_in=False, csrf_token=None, login_url=None,
        logout_url=None,
    )
    if sessions is not None:
        state.sign_in_available = True
        state.login_url, state.logout_url = "/auth/login", "/auth/logout"
        session_id = sessions.session_id(request)
        if session_id is not None:
            try:
                await sessions.identify(request, session_id)
            except AuthError:
                session_id = None
        state.signed_in = session_id is not None
        state.csrf_token = sessions.csrf_token(session_id) if session_id else None
    return Response(state.model_dump_json(), media_type="application/json", headers=_NO_STORE)
