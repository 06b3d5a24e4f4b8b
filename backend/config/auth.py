"""Start-up checks of the identity settings: a mode that cannot work stops the service."""

from __future__ import annotations

import ipaddress
from typing import Any

# Public-key algorithms JWT_ALGORITHMS may pin; HS256 has its own setting, never this list.
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MIN_HS256_SECRET_BYTES = 32
MIN_FRONTEND_SECRET_CHARS = 16
MIN_SESSION_SECRET_CHARS = 32


def check_auth_settings(settings: Any) -> None:
    """Raise ValueError naming the variable when the AUTH_MODE settings are incomplete."""
    if settings.auth_mode is None and settings.environment != "development":
        raise ValueError(
            "AUTH_MODE must be set when ENVIRONMENT is not development (none, header or jwt)"
        )
    for cidr in settings.trusted_frontends:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValueError(f"TRUSTED_FRONTENDS: {cidr!r} is not a CIDR") from None
    secret = settings.frontend_shared_secret
    if secret is not None and len(secret.get_secret_value()) < MIN_FRONTEND_SECRET_CHARS:
        raise ValueError(
            f"FRONTEND_SHARED_SECRET must be at least {MIN_FRONTEND_SECRET_CHARS} characters"
        )
    if settings.auth_mode == "header" and not (settings.trusted_frontends or secret):
        raise ValueError(
            "AUTH_MODE=header needs TRUSTED_FRONTENDS or FRONTEND_SHARED_SECRET "
            "(otherwise no front end can be trusted)"
        )
    if settings.auth_mode == "jwt":
        _check_jwt(settings)
    if settings.oidc_client_id is not None:
        _check_sign_in(settings)


def _check_jwt(settings: Any) -> None:
    if not settings.jwt_audience:
        raise ValueError("JWT_AUDIENCE is required when AUTH_MODE=jwt")
    sources = [
        name for name, value in (
            ("OIDC_ISSUER", settings.oidc_issuer), ("JWT_JWKS_URL", settings.jwt_jwks_url),
            ("JWT_STATIC_JWKS", settings.jwt_static_jwks),
            ("JWT_HS256_SECRET", settings.jwt_hs256_secret),
        ) if value
    ]
    if len(sources) != 1:
        raise ValueError(
            "AUTH_MODE=jwt needs exactly one key source of OIDC_ISSUER, JWT_JWKS_URL, "
            f"JWT_STATIC_JWKS or JWT_HS256_SECRET (got {', '.join(sources) or 'none'})"
        )
    if not settings.oidc_issuer and not settings.jwt_issuer:
        raise ValueError(f"JWT_ISSUER is required with {sources[0]}")
    for url in (settings.oidc_issuer, settings.jwt_jwks_url):
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"{sources[0]} must start with https:// (or http://)")
    hs = settings.jwt_hs256_secret
    if hs is not None and len(hs.get_secret_value().encode()) < MIN_HS256_SECRET_BYTES:
        raise ValueError(f"JWT_HS256_SECRET must be at least {MIN_HS256_SECRET_BYTES} bytes")
    unknown = [a for a in settings.jwt_algorithms if a not in PUBLIC_KEY_ALGORITHMS]
    if unknown or not settings.jwt_algorithms:
        raise ValueError(
            f"JWT_ALGORITHMS: {unknown or 'empty'} not allowed; choose from "
            f"{sorted(PUBLIC_KEY_ALGORITHMS)} (none is never accepted, HS256 only through "
            "JWT_HS256_SECRET)"
        )
    static = settings.jwt_static_jwks
    if static is not None and not isinstance(static.get("keys"), list):
        raise ValueError('JWT_STATIC_JWKS must be a JWK Set: {"keys": [...]}')


def _check_sign_in(settings: Any) -> None:
    if settings.auth_mode != "jwt" or not settings.oidc_issuer:
        raise ValueError(
            "OIDC_CLIENT_ID (browser sign-in) needs AUTH_MODE=jwt and OIDC_ISSUER (the "
            "provider's discovery document names its authorisation and token endpoints)"
        )
    url = settings.public_url
    if url is not None and (not url.startswith(("http://", "https://")) or "?" in url):
        raise ValueError("PUBLIC_URL must be the portal's base URL, https://host[:port][/path]")
    secret = settings.session_secret
    if secret is not None and len(secret.get_secret_value()) < MIN_SESSION_SECRET_CHARS:
        raise ValueError(f"SESSION_SECRET must be at least {MIN_SESSION_SECRET_CHARS} characters")
    if settings.environment == "development":
        return
    if url is None:
        raise ValueError(
            "PUBLIC_URL is required with OIDC_CLIENT_ID outside development (the redirect URI "
            "and the origin cookie-authenticated requests must come from)"
        )
    if secret is None:
        raise ValueError(
            f"SESSION_SECRET ({MIN_SESSION_SECRET_CHARS}+ characters) is required with "
            "OIDC_CLIENT_ID outside development: it encrypts the provider's tokens at rest"
        )
