"""Fallbacks in the specialists file: expanded once at start-up, references and cycles checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.providers.factory import ProviderTarget
from backend.specialists.manager import SpecialistManager, SpecialistsFileError
from backend.specialists.types import Route

A = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
B = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
C = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"


def specialist(sid: str, provider: str, model: str, *fallbacks: Any, **extra: Any) -> Any:
    return {
        "id": sid, "name": sid[:4], "provider": provider, "model": model,
        "fallbacks": list(fallbacks), **extra,
    }


def load(tmp_path: Path, *entries: Any) -> SpecialistManager:
    path = tmp_path / "specialists.yaml"
    path.write_text(yaml.safe_dump({"specialists": list(entries)}))
    return SpecialistManager.from_file(path)


def test_fallbacks_expand_in_order_through_referenced_specialists(tmp_path: Path) -> None:
    manager = load(
        tmp_path,
        specialist(
            A, "openai", "gpt-4o", {"specialist": B},
            {"provider": "openai_compatible", "model": "llama", "base_url": "http://ollama:11434/v1",
             "api_key_env": "OLLAMA_KEY"},
            temperature=0.2, max_output_tokens=300,
        ),
        # B is a backup only users cannot pick; it brings its own fallback along.
        specialist(B, "anthropic", "claude", {"provider": "google", "model": "gemini"},
                   {"provider": "openai", "model": "gpt-4o"}, enabled=False, temperature=0.9),
    )
    routes = manager.fallbacks(manager.get(A))
    assert routes == (
        Route(ProviderTarget("anthropic"), "claude", 0.9, None),
        Route(ProviderTarget("google"), "gemini", 0.9, None),
        # openai/gpt-4o under B's parameters differs from A's own route, so it stays
        Route(ProviderTarget("openai"), "gpt-4o", 0.9, None),
        Route(ProviderTarget("openai_compatible", "http://ollama:11434/v1", "OLLAMA_KEY"),
              "llama", 0.2, 300),
    )


def test_duplicate_routes_and_the_specialists_own_route_are_dropped(tmp_path: Path) -> None:
    manager = load(
        tmp_path,
        specialist(A, "openai", "gpt-4o", {"provider": "openai", "model": "gpt-4o"},
                   {"specialist": B}, {"specialist": C}),
        specialist(B, "google", "gemini"),
        specialist(C, "anthropic", "claude", {"specialist": B}),
    )
    assert [r.model for r in manager.fallbacks(manager.get(A))] == ["gemini", "claude"]
    assert manager.fallbacks(manager.get(B)) == ()


def test_an_unknown_fallback_specialist_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(SpecialistsFileError, match=f"{A} names fallback specialist {B}"):
        load(tmp_path, specialist(A, "openai", "gpt-4o", {"specialist": B}))


@pytest.mark.parametrize(
    "entries",
    [
        [specialist(A, "openai", "m", {"specialist": A})],
        [specialist(A, "openai", "m", {"specialist": B}),
         specialist(B, "google", "m", {"specialist": C}),
         specialist(C, "anthropic", "m", {"specialist": A})],
    ],
)
def test_a_fallback_cycle_stops_start_up(tmp_path: Path, entries: list[Any]) -> None:
    with pytest.raises(SpecialistsFileError, match="fallback cycle"):
        load(tmp_path, *entries)


@pytest.mark.parametrize(
    ("fallback", "message"),
    [
        ({"provider": "nope", "model": "m"}, "unknown provider 'nope'"),
        ({"provider": "openai"}, "needs `specialist`, or `provider` and `model`"),
        ({"specialist": B, "provider": "openai", "model": "m"}, "not both"),
        ({"model": "m", "temperature": 1}, "Extra inputs are not permitted"),
    ],
)
def test_malformed_fallbacks_are_refused(tmp_path: Path, fallback: Any, message: str) -> None:
    with pytest.raises(SpecialistsFileError, match=message):
        load(tmp_path, specialist(A, "openai", "m", fallback), specialist(B, "google", "m"))
