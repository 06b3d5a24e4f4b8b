"""The front-door tests' running portal (the chat tests' fixtures)."""

from __future__ import annotations

from backend.tests.chat.conftest import portal, portal_factory

__all__ = ["portal", "portal_factory"]
