"""The specialists file: validated at start-up, looked up by id, shipped with one per provider."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from backend.config.settings import DEFAULT_SPECIALISTS_FILE
from backend.specialists.manager import (
    SpecialistManager,
    SpecialistNotFound,
    SpecialistsFileError,
)

GOOD = {
    "id": "11111111-1111-4111-8111-111111111111",
    "name": "One",
    "provider": "openai",
    "model": "gpt-4o",
}


def _write(tmp_path: Path, entries: object) -> Path:
    path = tmp_path / "specialists.yaml"
    path.write_text(yaml.safe_dump({"specialists": entries}))
    return path


def test_the_shipped_file_has_one_specialist_per_provider_and_the_demo() -> None:
    manager = SpecialistManager.from_file(DEFAULT_SPECIALISTS_FILE)
    providers = {s.provider for s in manager.enabled()}
    assert {"openai", "anthropic", "google", "demo"} <= providers
    demo = manager.get("00000000-0000-4000-8000-000000000001")
    assert demo.provider == "demo"


def test_an_unknown_provider_stops_start_up_listing_the_valid_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, [{**GOOD, "provider": "openia"}])
    with pytest.raises(SpecialistsFileError) as info:
        SpecialistManager.from_file(path)
    message = str(info.value)
    assert "openia" in message
    for name in ("anthropic", "demo", "google", "openai", "openai_compatible"):
        assert name in message


@pytest.mark.parametrize(
    "entry",
    [
        {**GOOD, "id": "not-a-uuid"},
        {**GOOD, "temperature": 5},
        {**GOOD, "max_output_tokens": 0},
        {**GOOD, "surprise": True},
        {k: v for k, v in GOOD.items() if k != "model"},
    ],
)
def test_an_invalid_entry_stops_start_up_naming_the_file(tmp_path: Path, entry: object) -> None:
    with pytest.raises(SpecialistsFileError, match="SPECIALISTS_FILE"):
        SpecialistManager.from_file(_write(tmp_path, [entry]))


def test_duplicate_ids_and_a_missing_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecialistsFileError, match="duplicate"):
        SpecialistManager.from_file(_write(tmp_path, [GOOD, {**GOOD, "name": "Two"}]))
    with pytest.raises(SpecialistsFileError, match="cannot read"):
        SpecialistManager.from_file(tmp_path / "missing.yaml")


def test_lookup_accepts_any_uuid_spelling_and_hides_disabled_ones(tmp_path: Path) -> None:
    off = {**GOOD, "id": "22222222-2222-4222-8222-222222222222", "enabled": False}
    manager = SpecialistManager.from_file(_write(tmp_path, [GOOD, off]))
    assert manager.get(GOOD["id"].upper().replace("-", "")).name == "One"
    with pytest.raises(SpecialistNotFound):
        manager.get(off["id"])
    assert [s.name for s in manager.enabled()] == ["One"]


def test_a_swap_is_whole_and_a_bad_set_changes_nothing() -> None:
    from backend.specialists.types import Specialist

    one = Specialist.model_validate({**GOOD, "system_prompt": "v1"})
    manager = SpecialistManager([one])
    held = manager.get(GOOD["id"])  # what a request in flight keeps
    two = Specialist.model_validate({**GOOD, "system_prompt": "v2", "version": 2})
    manager.replace([two])
    assert manager.get(GOOD["id"]).version == 2 and held.system_prompt == "v1"
    cycle = Specialist.model_validate({**GOOD, "fallbacks": [{"specialist": GOOD["id"]}]})
    with pytest.raises(SpecialistsFileError, match="cycle"):
        manager.replace([cycle])
    assert manager.get(GOOD["id"]) is manager.all()[0] and manager.get(GOOD["id"]).version == 2
