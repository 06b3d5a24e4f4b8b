"""The guard's configuration is checked at start-up: settings and the specialists file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from backend.main import build_guard
from backend.specialists.manager import SpecialistManager, SpecialistsFileError
from backend.tests.support import make_settings


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pii_default_mode", "sometimes", "mask"),
        ("pii_default_types", ["card", "passport"], "national_id"),
        ("pii_default_types", [], "at least 1"),
        ("pii_national_ids", ["de.idnr", "xx.nope"], "unknown national ids"),
        ("pii_phone_regions", ["GB", "XX"], "unknown phone regions"),
    ],
)
def test_wrong_guard_settings_stop_start_up(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        make_settings(tmp_path, **{field: value})


def test_the_default_policy_comes_from_the_settings(tmp_path: Path) -> None:
    guard = build_guard(make_settings(
        tmp_path, pii_default_mode="block", pii_default_types=["email", "iban"]
    ))
    assert guard.default.mode == "block" and guard.default.types == ("email", "iban")
    assert guard.policy(None) is guard.default


@pytest.mark.parametrize(
    "pii",
    [{"mode": "sometimes"}, {"mode": "mask", "types": ["passport"]}, {"mode": "mask", "x": 1},
     {"types": ["card"]}],
)
def test_a_wrong_pii_policy_in_the_specialists_file_stops_start_up(
    tmp_path: Path, pii: dict[str, object]
) -> None:
    entry = {"id": "a0000000-0000-4000-8000-000000000001", "name": "x", "provider": "demo",
             "model": "m", "pii": pii}
    path = tmp_path / "specialists.yaml"
    path.write_text(yaml.safe_dump({"specialists": [entry]}))
    with pytest.raises(SpecialistsFileError, match="pii"):
        SpecialistManager.from_file(path)
