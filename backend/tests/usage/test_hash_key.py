"""Without USER_HASH_SECRET, user hashes use a random key kept 0600 beside the data."""

from __future__ import annotations

import hashlib
import hmac
import logging
import sqlite3
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from backend.config.settings import Settings
from backend.tests.support import make_settings, run_app
from backend.usage.identity import HashKeyError, hash_email, load_or_create_key

# The fixed key earlier versions used in development: it is public, in the repository's history.
OLD_PUBLIC_KEY = b"dev-only-user-hash-secret-change-me"
DEMO = "00000000-0000-4000-8000-000000000001"


def test_the_key_is_created_once_0600_and_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "var" / "user-hash-secret"
    key, created = load_or_create_key(path)
    again, created_again = load_or_create_key(path)
    assert created and not created_again and key == again
    assert len(key) == 64 and int(key, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert load_or_create_key(tmp_path / "other")[0] != key  # random: each install its own
    assert [p.name for p in path.parent.iterdir()] == ["user-hash-secret"]  # no drafts left


def test_workers_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "user-hash-secret"
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: load_or_create_key(path), range(32)))
    assert len({key for key, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_an_unsafe_or_empty_key_file_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "user-hash-secret"
    load_or_create_key(path)
    path.chmod(0o644)
    with pytest.raises(HashKeyError, match="readable by others"):
        load_or_create_key(path)
    path.chmod(0o600)
    path.write_text("\n")
    with pytest.raises(HashKeyError, match="does not hold a key"):
        load_or_create_key(path)


async def _chat_as(settings: Settings, email: str) -> None:
    async with run_app(settings) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/chat/send", json={"specialist_id": DEMO, "message": "hi"},
            headers={"x-user-email": email},
        )
        assert response.status_code == 200


async def test_hashes_are_stable_across_restarts_and_never_the_public_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "var" / "user-hash-secret"
    settings = make_settings(
        tmp_path, environment="development", user_hash_secret=None,
        user_hash_secret_file=key_file,
    )
    with caplog.at_level(logging.WARNING, logger="backend.usage.identity"):
        await _chat_as(settings, "Alice@Example.com")
        await _chat_as(settings, "ALICE@example.com")  # a restart: the same app settings
    with sqlite3.connect(tmp_path / "usage.db") as db:
        hashes = [row[0] for row in db.execute("SELECT user_email_hash FROM usage_log")]
    key = key_file.read_text().strip()
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    assert hashes[0] == hash_email(key.encode(), "alice@example.com")
    public = hmac.new(OLD_PUBLIC_KEY, b"alice@example.com", hashlib.sha256).hexdigest()
    assert hashes[0] != public
    lines = [r.getMessage() for r in caplog.records if r.name == "backend.usage.identity"]
    assert len(lines) == 2 and "generated now in" in lines[0] and "on first start" in lines[1]
    assert all(str(key_file) in line and key not in line for line in lines)


def test_outside_development_user_hash_secret_is_still_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="USER_HASH_SECRET must be set"):
        make_settings(tmp_path, environment="production", user_hash_secret=None)
    with pytest.raises(ValueError, match="USER_HASH_SECRET must be set"):
        make_settings(tmp_path, environment="production", user_hash_secret="")
