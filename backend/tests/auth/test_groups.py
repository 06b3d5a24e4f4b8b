"""Groups: restricted specialists are hidden from and refused to non-members, the reports
need an admin, and a token without a groups claim is nobody's admin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from backend.auth.identity import Identity
from backend.auth.policy import is_admin, may_use
from backend.tests.auth.conftest import ADMIN_GROUP, RESTRICTED, bearer, jwt_settings
from backend.tests.auth.idp import IdP
from backend.tests.chat.conftest import SPECIALISTS, Portal
from backend.tests.transports.conftest import usage_rows


def _with_restricted(path: Path) -> Path:
    data = yaml.safe_load(path.read_text())
    path = path.with_name("restricted.yaml")  # the factory rewrites its own file
    data["specialists"].append({
        "id": RESTRICTED, "name": "Risk desk", "provider": "openai", "model": "gpt-4o",
        "allowed_groups": ["risk"],
    })
    path.write_text(yaml.safe_dump(data))
    return path


async def _portal(idp: IdP, portal_factory: Any, tmp_path: Path) -> Portal:
    first: Portal = await portal_factory(**jwt_settings(idp))
    restricted = _with_restricted(Path(first.settings.specialists_file))
    # Its own database: one already seeded keeps its specialists (the file seeds an empty one).
    portal: Portal = await portal_factory(
        **jwt_settings(idp, admin_token="break-glass-token-123"), specialists_file=restricted,
        database_url=f"sqlite:///{tmp_path / 'restricted.db'}",
    )
    return portal


async def test_a_restricted_specialist_is_hidden_and_refused_to_a_non_member(
    idp: IdP, portal_factory: Any, tmp_path: Path
) -> None:
    portal = await _portal(idp, portal_factory, tmp_path)
    staff, risk = idp.token(groups=["staff"]), idp.token(groups=["risk"])
    listed = (await portal.client.get("/specialists", headers=bearer(staff))).json()
    assert RESTRICTED not in {s["id"] for s in listed}
    assert SPECIALISTS["openai"] in {s["id"] for s in listed}
    models = (await portal.client.get("/v1/models", headers=bearer(staff))).json()
    assert RESTRICTED not in {m["id"] for m in models["data"]}
    body = {"specialist_id": RESTRICTED, "message": "hi"}
    refused = await portal.client.post("/chat/send", json=body, headers=bearer(staff))
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    v1 = await portal.client.post("/v1/chat/completions", headers=bearer(staff), json={
        "model": RESTRICTED, "messages": [{"role": "user", "content": "hi"}]})
    assert v1.status_code == 403
    assert portal.fakes["openai"].requests == []
    member = (await portal.client.get("/specialists", headers=bearer(risk))).json()
    assert RESTRICTED in {s["id"] for s in member}
    allowed = await portal.client.post("/chat/send", json=body, headers=bearer(risk))
    assert allowed.status_code == 200, allowed.text
    assert len(portal.fakes["openai"].requests) == 1


async def test_the_reports_need_an_admin_group_or_the_break_glass_token(
    idp: IdP, portal_factory: Any, tmp_path: Path
) -> None:
    portal = await _portal(idp, portal_factory, tmp_path)
    await portal.client.post(
        "/chat/send", json={"specialist_id": SPECIALISTS["openai"], "message": "hi"},
        headers=bearer(idp.token(cost_center="CC-7")),
    )
    await usage_rows(portal, 1)
    staff = await portal.client.get("/usage/summary", headers=bearer(idp.token()))
    assert staff.status_code == 403 and staff.json()["error"] == "forbidden"
    no_groups = await portal.client.get("/usage/summary", headers=bearer(idp.token(groups=None)))
    assert no_groups.status_code == 403
    anonymous = await portal.client.get("/usage/summary")
    assert anonymous.status_code == 401
    admin = await portal.client.get(
        "/usage/summary", params={"group_by": "cost_center"},
        headers=bearer(idp.token(groups=[ADMIN_GROUP])),
    )
    assert admin.status_code == 200, admin.text
    assert [(g["key"], g["requests"]) for g in admin.json()["groups"]] == [("CC-7", 1)]
    glass = await portal.client.get("/usage/status", headers=bearer("break-glass-token-123"))
    assert glass.status_code == 200
    me = (await portal.client.get("/me", headers=bearer(idp.token(groups=None)))).json()
    assert me["groups"] == [] and me["is_admin"] is False


def test_the_named_decisions() -> None:
    class Spec:
        def __init__(self, groups: tuple[str, ...]) -> None:
            self.allowed_groups = groups

    nobody = Identity(method="jwt", user_id="u", user_hash="h")
    risk = Identity(method="jwt", user_id="u", groups=frozenset({"risk"}), user_hash="h")
    assert may_use(nobody, Spec(())) and not may_use(nobody, Spec(("risk",)))
    assert may_use(risk, Spec(("risk", "ops")))
    assert not is_admin(nobody, ["admins"]) and not is_admin(risk, ["admins"])
    assert is_admin(Identity(method="jwt", groups=frozenset({"admins"})), ["admins"])
    assert not is_admin(Identity(method="jwt", groups=frozenset({"admins"})), [])
