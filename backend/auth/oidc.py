"""The portal as an OIDC relying party: discovery, the authorisation request with PKCE, the
token endpoint (code exchange, refresh), revocation and RP-initiated logout.

Only the provider's wire format lives here; what a session does with the tokens is
`auth/sessions.py`'s. Token endpoint errors never carry the tokens or the code into a
message: a refused grant is SignInFailed (at sign-in) or SessionExpired (at refresh).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from backend.auth.errors import AuthUnavailable, SessionExpired, SignInFailed
from backend.auth.jwks import KeySetUnavailable, discover

log = logging.getLogger(__name__)

# An access token whose response gives no expires_in is refreshed after this long.
DEFAULT_TOKEN_SECONDS = 300.0


def pkce_challenge(verifier: str) -> str:
    """RFC 7636's S256 code challenge of a verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Endpoints:
    """What the discovery document says the provider serves."""

    authorization: str
    token: str
    end_session: str | None
    revocation: str | None


@dataclass(frozen=True, slots=True)
class TokenSet:
    """A token endpoint's answer: the tokens, and when the access token expires (epoch)."""

    access_token: str
    refresh_token: str | None
    id_token: str | None
    expires_at: float


class OidcClient:
    """One client registration at one issuer."""

    def __init__(
        self, session: aiohttp.ClientSession, *, issuer: str, client_id: str,
        client_secret: str | None, scopes: list[str], timeout: float,
    ) -> None:
        self._session = session
        self._issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._scopes = " ".join(scopes)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._endpoints: Endpoints | None = None

    async def endpoints(self) -> Endpoints:
        """The provider's endpoints, discovered once (retried on the next call if that fails)."""
        if self._endpoints is None:
            try:
                document = await discover(self._session, self._issuer, self._timeout)
            except KeySetUnavailable as exc:
                raise AuthUnavailable("the identity provider cannot be reached") from exc
            self._endpoints = _endpoints_of(document)
        return self._endpoints

    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, verifier: str
    ) -> str:
        """Where the browser goes to sign in: code flow, S256 PKCE, state and nonce."""
        endpoints = await self.endpoints()
        query = urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
            "scope": self._scopes, "state": state, "nonce": nonce,
            "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256",
        })
        separator = "&" if "?" in endpoints.authorization else "?"
        return f"{endpoints.authorization}{separator}{query}"

    async def exchange(self, *, code: str, verifier: str, redirect_uri: str) -> TokenSet:
        """Trade an authorisation code (once) for tokens; SignInFailed when refused."""
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": redirect_uri, "code_verifier": verifier}
        status, body = await self._token_request(form)
        if status != 200:
            raise SignInFailed(f"the identity provider refused the code ({_error_of(body)})")
        return _token_set(body, SignInFailed)

    async def refresh(self, refresh_token: str) -> TokenSet:
        """New tokens for a refresh token; SessionExpired when the provider refuses it."""
        status, body = await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )
        if status in (400, 401):
            raise SessionExpired(
                f"the identity provider refused to refresh the session ({_error_of(body)})"
            )
        if status != 200:
            raise AuthUnavailable(f"the identity provider's token endpoint answered {status}")
        tokens = _token_set(body, SessionExpired)
        # Providers that do not rotate refresh tokens answer without one: keep the old.
        return tokens if tokens.refresh_token else TokenSet(
            tokens.access_token, refresh_token, tokens.id_token, tokens.expires_at
        )

    async def revoke(self, token: str, hint: str) -> None:
        """Revoke a token at the provider (RFC 7009), when it has the endpoint; best effort."""
        endpoints = await self.endpoints()
        if endpoints.revocation is None:
            return
        form = {"token": token, "token_type_hint": hint, **self._client_auth_form()}
        try:
            async with self._session.post(
                endpoints.revocation, data=form, headers=self._headers(), timeout=self._timeout
            ) as response:
                if response.status != 200:
                    log.warning("the provider answered %d to a token revocation", response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("token revocation failed: %s", type(exc).__name__)

    async def end_session_url(self, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout at the provider, if it offers it.

        By client_id, not id_token_hint: this URL goes through the page, which never sees a
        token (OIDC RP-Initiated Logout 1.0 allows client_id instead).
        """
        endpoints = await self.endpoints()
        if endpoints.end_session is None:
            return None
        query = urlencode({
            "client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri,
        })
        separator = "&" if "?" in endpoints.end_session else "?"
        return f"{endpoints.end_session}{separator}{query}"

    async def _token_request(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        endpoints = await self.endpoints()
        try:
            async with self._session.post(
                endpoints.token, data={**form, **self._client_auth_form()},
                headers=self._headers(), timeout=self._timeout,
            ) as response:
                body = await response.json(content_type=None)
                return response.status, body if isinstance(body, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise AuthUnavailable(
                "the identity provider's token endpoint cannot be reached"
            ) from exc

    def _headers(self) -> dict[str, str]:
        # A confidential client authenticates with HTTP Basic (client_secret_basic, the
        # default every provider supports); a public client only names itself in the form.
        headers = {"Accept": "application/json"}
        if self._secret is not None:
            pair = f"{_form_encode(self.client_id)}:{_form_encode(self._secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        return headers

    def _client_auth_form(self) -> dict[str, str]:
        return {} if self._secret is not None else {"client_id": self.client_id}


def _form_encode(value: str) -> str:
    # RFC 6749 2.3.1: the id and secret are form-encoded before Basic's base64.
    return urlencode({"": value})[1:]


def _endpoints_of(document: dict[str, Any]) -> Endpoints:
    def url(name: str) -> str | None:
        value = document.get(name)
        ok = isinstance(value, str) and value.startswith(("http://", "https://"))
        return value if ok else None

    authorization, token = url("authorization_endpoint"), url("token_endpoint")
    if authorization is None or token is None:
        raise AuthUnavailable("the provider's discovery document has no authorisation or "
                              "token endpoint")
    return Endpoints(authorization, token, url("end_session_endpoint"), url("revocation_endpoint"))


def _token_set(body: dict[str, Any], error: type[SignInFailed | SessionExpired]) -> TokenSet:
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise error("the identity provider's answer has no access token")
    expires_in = body.get("expires_in")
    seconds = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 \
        else DEFAULT_TOKEN_SECONDS
    refresh, id_token = body.get("refresh_token"), body.get("id_token")
    return TokenSet(
        access, refresh if isinstance(refresh, str) and refresh else None,
        id_token if isinstance(id_token, str) and id_token else None, time.time() + seconds,
    )


def _error_of(body: dict[str, Any]) -> str:
    # RFC 6749's error code only: error_description is the provider's free text.
    error = body.get("error")
    return error if isinstance(error, str) and error.isascii() and len(error) < 64 else "error"
