"""A portal whose specialists carry PII policies, all answered by the fake OpenAI server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.tests.chat.conftest import Portal, portal_factory

__all__ = ["Portal", "portal_factory"]

POLICIES: dict[str, dict[str, Any] | None] = {
    "default": None,  # PII_DEFAULT_MODE / PII_DEFAULT_TYPES
    "mask": {"mode": "mask"},
    "block": {"mode": "block"},
    "keep": {"mode": "mask", "restore": False},
    "off": {"mode": "off"},
    "email_only": {"mode": "mask", "types": ["email"]},
}
IDS = {name: f"a0000000-0000-4000-8000-{index:012d}" for index, name in enumerate(POLICIES)}
SYSTEM_PROMPT = "You are the guarded test specialist."


@pytest.fixture
async def guarded(portal_factory: Any, tmp_path: Path) -> Portal:
    """A running portal with one OpenAI specialist per policy."""
    entries = []
    for name, policy in POLICIES.items():
        entry: dict[str, Any] = {
            "id": IDS[name], "name": f"pii {name}", "provider": "openai", "model": "gpt-4o",
            "system_prompt": SYSTEM_PROMPT,
        }
        if policy is not None:
            entry["pii"] = policy
        entries.append(entry)
    path = tmp_path / "pii-specialists.yaml"
    path.write_text(yaml.safe_dump({"specialists": entries}))
    result: Portal = await portal_factory(specialists_file=path)
    return result
