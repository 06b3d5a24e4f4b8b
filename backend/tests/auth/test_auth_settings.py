"""AUTH_MODE settings: an incomplete mode stops start-up, naming the variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from backend.tests.support import make_settings

JWT = {"auth_mode": "jwt", "oidc_issuer": "https://idp.example", "jwt_audience": "portal"}
SIGN_IN = {**JWT, "oidc_client_id": "web", "public_url": "https://portal.example",
           "session_secret": "s" * 32}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"auth_mode": None}, "AUTH_MODE"),
        ({**JWT, "jwt_audience": None}, "JWT_AUDIENCE"),
        ({**JWT, "jwt_jwks_url": "https://idp.example/keys"}, "exactly one key source"),
        ({**JWT, "oidc_issuer": None, "jwt_hs256_secret": "x" * 40}, "JWT_ISSUER"),
        ({**JWT, "oidc_issuer": None, "jwt_issuer": "i", "jwt_hs256_secret": "short"},
         "JWT_HS256_SECRET"),
        ({**JWT, "jwt_algorithms": ["RS256", "none"]}, "JWT_ALGORITHMS"),
        ({**JWT, "jwt_algorithms": ["HS256"]}, "JWT_ALGORITHMS"),
        ({"auth_mode": "header"}, "TRUSTED_FRONTENDS"),
        ({"auth_mode": "header", "trusted_frontends": ["not-a-cidr"]}, "TRUSTED_FRONTENDS"),
        ({"auth_mode": "header", "frontend_shared_secret": "short"}, "FRONTEND_SHARED_SECRET"),
        # Browser sign-in: only over jwt by discovery; outside development a public URL and
        # a secret that encrypts the tokens at rest.
        ({"oidc_client_id": "web"}, "OIDC_CLIENT_ID"),
        ({**SIGN_IN, "public_url": None}, "PUBLIC_URL"),
        ({**SIGN_IN, "public_url": "portal.example.com"}, "PUBLIC_URL"),
        ({**SIGN_IN, "session_secret": None}, "SESSION_SECRET"),
        ({**SIGN_IN, "session_secret": "too-short"}, "SESSION_SECRET"),
    ],
)
def test_an_incomplete_auth_mode_is_refused_by_name(
    tmp_path: Path, overrides: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        make_settings(tmp_path, **overrides)


def test_development_defaults_to_none_and_complete_modes_load(tmp_path: Path) -> None:
    dev = make_settings(tmp_path, environment="development", auth_mode=None)
    assert dev.effective_auth_mode() == "none"
    assert make_settings(tmp_path, **JWT).effective_auth_mode() == "jwt"
    header = make_settings(tmp_path, auth_mode="header", trusted_frontends=["10.0.0.0/8"])
    assert header.effective_auth_mode() == "header"


def test_sign_in_settings_load_and_development_needs_no_secret(tmp_path: Path) -> None:
    assert make_settings(tmp_path, **SIGN_IN).sign_in_enabled()
    dev = make_settings(tmp_path, **{**SIGN_IN, "environment": "development",
                                     "public_url": None, "session_secret": None})
    assert dev.sign_in_enabled()
    assert not make_settings(tmp_path, **JWT).sign_in_enabled()
