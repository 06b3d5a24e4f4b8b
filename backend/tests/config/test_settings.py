"""Settings: seed names, SDK-style base URLs, clear start-up errors, documented everywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.config.settings import Settings
from backend.main import SettingsError, create_app, load_settings

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_follow_the_seed_and_the_sdks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "RATE_LIMIT_REQUESTS", "OPENAI_BASE_URL", "ALLOWED_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "sqlite:///./ai_portal.db"
    assert (settings.rate_limit_requests, settings.rate_limit_window_seconds) == (60, 3600)
    assert settings.openai_base_url == "https://api.openai.com/v1"
    assert settings.anthropic_base_url == "https://api.anthropic.com"
    assert settings.google_base_url == "https://generativelanguage.googleapis.com"
    assert settings.google_api_version == "v1beta"


def test_the_default_byte_cap_fits_the_character_limits_fully_escaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("MAX_REQUEST_BYTES", "MAX_TOTAL_CHARS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    # 12 bytes a character (an astral one escaped as \ud83d\ude00) of 200,000, plus 64 KiB
    # for the JSON around them: what the README and the nginx snippet quote.
    assert settings.max_total_chars == 200_000
    assert settings.request_byte_cap() == 12 * 200_000 + 65_536 == 2_465_536
    smaller = Settings(_env_file=None, max_total_chars=1000)  # type: ignore[call-arg]
    assert smaller.request_byte_cap() == 12 * 1000 + 65_536
    fixed = Settings(_env_file=None, max_request_bytes=4096)  # type: ignore[call-arg]
    assert fixed.request_byte_cap() == 4096


def test_seed_names_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_REQUESTS", "5")
    monkeypatch.setenv("ALLOWED_ORIGINS", '["http://a.example"]')
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.rate_limit_requests == 5
    assert settings.allowed_origins == ["http://a.example"]
    assert settings.openai_base_url == "http://127.0.0.1:11434/v1"
    assert settings.openai_api_key is not None
    assert "sk-test" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RATE_LIMIT_REQUESTS", "many"),
        ("RATE_LIMIT_WINDOW_SECONDS", "0"),
        ("OPENAI_BASE_URL", "api.openai.com"),
        ("DATABASE_URL", "mysql://x"),
        ("ALLOWED_ORIGINS", "not-json"),
        # Rate limiting (issue 3).
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("RATE_LIMIT_BACKEND", "memcached"),
        ("RATE_LIMIT_USER_REQUESTS", "0"),
        ("RATE_LIMIT_USERS", '{"a@x.com": {"requests": 0}}'),
        ("RATE_LIMIT_SPECIALISTS", '{"not-a-uuid": {"requests": 1}}'),
        ("RATE_LIMIT_REDIS_TIMEOUT_SECONDS", "0"),
    ],
)
def test_a_wrong_value_fails_at_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    from backend.config.settings import get_settings

    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as info:
            load_settings()
        assert variable in str(info.value)
    finally:
        get_settings.cache_clear()


def test_production_refuses_to_start_without_a_user_hash_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from backend.config.settings import get_settings

    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("USER_HASH_SECRET", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="USER_HASH_SECRET"):
            create_app()
    finally:
        get_settings.cache_clear()


def test_every_setting_is_documented_in_env_example_and_readme() -> None:
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    for name in Settings.model_fields:
        assert name.upper() in documented, f"{name.upper()} missing from .env.example"
        assert f"`{name.upper()}`" in readme, f"{name.upper()} missing from README.md"


def test_env_example_itself_is_a_valid_configuration() -> None:
    settings = Settings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    assert settings.openai_api_key is None or not settings.openai_api_key.get_secret_value()
