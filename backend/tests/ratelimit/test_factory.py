"""Settings to limiter: backend choice, hashed named users, specialist overrides, bad values."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from backend.ratelimit.factory import backend_name, policy_from_settings
from backend.specialists.manager import SpecialistManager
from backend.tests.support import make_settings
from backend.usage.identity import hash_email

FILE_LIMITED = "22222222-2222-4222-8222-222222222222"
BOTH = "33333333-3333-4333-8333-333333333333"


def specialists(tmp_path: Path) -> SpecialistManager:
    entries = [
        {"id": FILE_LIMITED, "name": "a", "provider": "demo", "model": "m",
         "rate_limit": {"requests": 5}},
        {"id": BOTH, "name": "b", "provider": "demo", "model": "m",
         "rate_limit": {"requests": 7, "window_seconds": 10}},
    ]
    path = tmp_path / "specialists.yaml"
    path.write_text(yaml.safe_dump({"specialists": entries}))
    return SpecialistManager.from_file(path)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, "memory"),
        ({"redis_url": "redis://127.0.0.1:6379/0"}, "redis"),
        ({"rate_limit_backend": "redis"}, "redis"),
        ({"redis_url": "redis://127.0.0.1:6379/0", "rate_limit_backend": "memory"}, "memory"),
        ({"redis_url": "", "rate_limit_backend": ""}, "memory"),  # blank lines mean unset
    ],
)
def test_the_backend_follows_redis_url_unless_named(
    tmp_path: Path, values: dict[str, str], expected: str
) -> None:
    assert backend_name(make_settings(tmp_path, **values)) == expected


def test_policy_from_settings_hashes_users_and_lets_settings_win_over_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    unknown = "99999999-9999-4999-8999-999999999999"
    settings = make_settings(
        tmp_path,
        rate_limit_requests=60, rate_limit_window_seconds=3600,
        rate_limit_user_requests=30,
        rate_limit_users={"Alice@Example.com": {"requests": 600}},
        rate_limit_specialists={BOTH: {"requests": 3}, unknown: {"requests": 1}},
    )
    with caplog.at_level(logging.WARNING):
        policy = policy_from_settings(settings, specialists(tmp_path))
    alice = hash_email(settings.hash_secret(), "alice@example.com")
    assert set(policy.users) == {alice}  # the hash, never the email
    assert (policy.users[alice].capacity, policy.users[alice].window_seconds) == (600, 3600)
    assert (policy.user.capacity, policy.user.window_seconds) == (30, 3600)
    assert policy.specialists[FILE_LIMITED].capacity == 5
    assert policy.specialists[BOTH].capacity == 3  # the setting, not the file's 7
    assert any(unknown in r.getMessage() for r in caplog.records)
    assert "Alice" not in caplog.text and "alice" not in caplog.text


