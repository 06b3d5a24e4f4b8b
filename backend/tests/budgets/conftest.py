"""Budget test fixtures: the chat portal with its fakes, and the real Redis with a prefix."""

from __future__ import annotations

from backend.tests.chat.conftest import portal_factory
from backend.tests.ratelimit.conftest import redis_client, redis_prefix, redis_url

__all__ = ["portal_factory", "redis_client", "redis_prefix", "redis_url"]
