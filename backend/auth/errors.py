"""Authentication and authorisation failures; `api/errors.py` gives them their statuses."""

from __future__ import annotations

from backend.errors import PortalError


class AuthError(PortalError):
    """The caller's credentials are missing or not good (HTTP 401, RFC 6750).

    The message is the `error_description` of WWW-Authenticate: a fixed text, never any
    part of the token.
    """

    code = "token_invalid"
    # RFC 6750's error code; None when no credentials were sent at all.
    bearer_error: str | None = "invalid_token"


class TokenMissing(AuthError):
    """No credentials on a request that needs them."""

    code = "token_missing"
    bearer_error = None


class TokenInvalid(AuthError):
    """Credentials that do not verify (bad signature, wrong issuer or audience, garbage)."""

    code = "token_invalid"


class TokenExpired(TokenInvalid):
    """A token or API key past its expiry."""

    code = "token_expired"


class UntrustedFrontend(AuthError):
    """Identity headers from a caller that is not a trusted front end (header mode)."""

    code = "untrusted_frontend"


class Forbidden(PortalError):
    """The caller is known but not allowed to do this (HTTP 403)."""

    code = "forbidden"


class AuthUnavailable(PortalError):
    """The identity provider's keys cannot be had, and the last ones are too old (HTTP 503)."""

    code = "auth_unavailable"


class SessionExpired(TokenExpired):
    """A browser session past its lifetime, signed out, or whose refresh the provider refused."""

    code = "session_expired"


class CsrfRefused(Forbidden):
    """A cookie-authenticated request that did not prove it came from the portal's own page."""

    code = "csrf_refused"


class SignInFailed(PortalError):
    """The browser's sign-in could not be completed (bad state, a used code, a bad ID token)."""

    code = "sign_in_failed"
