"""The observability tests run the chat tests' portal (all three provider fakes)."""

from __future__ import annotations

from backend.tests.chat.conftest import Portal, portal, portal_factory

__all__ = ["Portal", "portal", "portal_factory"]
