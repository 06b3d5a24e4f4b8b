"""Classification ceilings: a version above its provider's (or a fallback's) ceiling is 422."""

from __future__ import annotations

from typing import Any

import pytest

from backend.config.classification import allowed
from backend.governance.errors import InvalidVersion
from backend.governance.versions import validate
from backend.specialists.manager import SpecialistManager
from backend.specialists.types import Specialist
from backend.tests.governance.conftest import ALICE, governed_portal

SID = "12121212-1212-4121-8121-121212121212"
LOCAL = {"provider": "openai_compatible", "model": "llama3.1", "base_url": "http://127.0.0.1:9"}
CEILINGS: dict[str, Any] = {"openai_compatible": "restricted", "anthropic": "confidential"}


def _check(content: dict[str, Any], current: SpecialistManager | None = None) -> Specialist:
    return validate(SID, 1, {"name": "x", **content},
                    current=current or SpecialistManager([]), ceilings=CEILINGS)


def test_the_levels_are_ordered() -> None:
    assert allowed("public", "internal") and allowed("internal", "internal")
    assert not allowed("confidential", "internal") and allowed("restricted", "restricted")


@pytest.mark.parametrize(("content", "ok"), [
    ({"provider": "openai", "model": "gpt-4o"}, True),  # internal by default, ceiling internal
    ({"provider": "openai", "model": "gpt-4o", "classification": "public"}, True),
    ({"provider": "openai", "model": "gpt-4o", "classification": "confidential"}, False),
    ({"provider": "google", "model": "g", "classification": "restricted"}, False),
    ({"provider": "anthropic", "model": "c", "classification": "confidential"}, True),
    ({"provider": "anthropic", "model": "c", "classification": "restricted"}, False),
    ({**LOCAL, "classification": "restricted"}, True),
])
def test_the_own_provider_ceiling(content: dict[str, Any], ok: bool) -> None:
    if ok:
        assert _check(content).classification == content.get("classification", "internal")
    else:
        with pytest.raises(InvalidVersion) as caught:
            _check(content)
        assert caught.value.detail[0]["loc"] == ["body", "provider"]
        assert caught.value.detail[0]["type"] == "classification_ceiling"


def test_a_provider_fallback_above_its_ceiling_is_refused() -> None:
    content = {**LOCAL, "classification": "restricted",
               "fallbacks": [{"provider": "openai", "model": "gpt-4o"}]}
    with pytest.raises(InvalidVersion) as caught:
        _check(content)
    assert [d["loc"] for d in caught.value.detail] == [["body", "fallbacks"]]


def test_a_specialist_fallback_is_checked_by_where_it_routes() -> None:
    backup = Specialist.model_validate({
        "id": "34343434-3434-4343-8343-343434343434", "name": "b", "provider": "google",
        "model": "g", "enabled": False})
    content = {**LOCAL, "classification": "confidential",
               "fallbacks": [{"specialist": str(backup.id)}]}
    with pytest.raises(InvalidVersion):
        _check(content, SpecialistManager([backup]))
    # The same fallback is fine for internal data.
    assert _check({**content, "classification": "internal"}, SpecialistManager([backup]))


async def test_over_http_restricted_work_only_goes_to_a_cleared_provider(
    portal_factory: Any, tmp_path: Any
) -> None:
    portal = await governed_portal(
        portal_factory, f"sqlite:///{tmp_path / 'c.db'}",
        provider_classification={"openai_compatible": "restricted"})
    refused = await portal.client.post("/admin/specialists", headers=ALICE, json={
        "name": "Deals", "provider": "openai", "model": "gpt-4o",
        "classification": "restricted", "reason": "m&a desk"})
    assert refused.status_code == 422 and "openai" in refused.json()["detail"][0]["msg"]
    fallback = await portal.client.post("/admin/specialists", headers=ALICE, json={
        **LOCAL, "name": "Deals", "classification": "restricted", "reason": "m&a desk",
        "fallbacks": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}]})
    assert fallback.status_code == 422
    assert fallback.json()["detail"][0]["loc"] == ["body", "fallbacks"]
    ok = await portal.client.post("/admin/specialists", headers=ALICE, json={
        **LOCAL, "name": "Deals", "classification": "restricted", "reason": "m&a desk"})
    assert ok.status_code == 201, ok.text
    listed = (await portal.client.get("/admin/specialists", headers=ALICE)).json()
    assert len(listed) == 7  # the six seeded plus this one: the refused ones were not stored


def test_a_ceiling_for_an_unknown_provider_stops_start_up(tmp_path: Any) -> None:
    from backend.governance.startup import policy_of
    from backend.providers.factory import UnknownProvider
    from backend.tests.support import make_settings

    with pytest.raises(UnknownProvider, match=r"PROVIDER_CLASSIFICATION.*opneai"):
        policy_of(make_settings(tmp_path, provider_classification={"opneai": "public"}))
    assert policy_of(make_settings(tmp_path)).approval == "required"  # outside development
    assert policy_of(make_settings(tmp_path, environment="development",
                                   user_hash_secret=None)).approval == "none"


async def test_a_ceiling_tightened_after_going_live_stops_serving_it(
    portal_factory: Any, tmp_path: Any
) -> None:
    from backend.tests.chat.conftest import SPECIALISTS
    from backend.tests.governance.conftest import CAROL, chat

    url = f"sqlite:///{tmp_path / 'tight.db'}"
    first = await governed_portal(portal_factory, url)
    assert (await chat(first.client, SPECIALISTS["openai"], CAROL)).status_code == 200
    for source in ("database", "file"):
        tight = await governed_portal(portal_factory, url, specialists_source=source,
                                      provider_classification={"openai": "public"})
        refused = await chat(tight.client, SPECIALISTS["openai"], CAROL)
        assert refused.status_code == 404, source  # internal data may no longer go to openai
        assert (await chat(tight.client, SPECIALISTS["anthropic"], CAROL)).status_code == 200
