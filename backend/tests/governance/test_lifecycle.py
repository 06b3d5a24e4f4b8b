"""The whole lifecycle over HTTP with two admins, on SQLite and PostgreSQL: create, propose,
self-approval refused, approve, try, reject, disable, enable, roll back; history and audit."""

from __future__ import annotations

import csv
import io
from typing import Any

from backend.tests.chat.conftest import SPECIALISTS
from backend.tests.governance.conftest import (
    ALICE,
    ALICE_HASH,
    BOB,
    BOB_HASH,
    CAROL,
    chat,
    governed_portal,
    sha,
)
from backend.tests.transports.conftest import usage_rows

NEW = {"name": "Treasury", "provider": "openai", "model": "gpt-4o",
       "system_prompt": "v1 prompt", "temperature": 0.5}


def _prompts(portal: Any) -> list[str]:
    return [r.json["messages"][0]["content"] for r in portal.fakes["openai"].requests]


async def test_two_admins_take_a_specialist_through_its_whole_lifecycle(
    portal_factory: Any, database_url: str
) -> None:
    portal = await governed_portal(portal_factory, database_url)
    client = portal.client
    # The seed: the file's specialists, each with a live version.
    listed = (await client.get("/admin/specialists", headers=ALICE)).json()
    seeded = {s["id"]: s for s in listed}
    assert seeded[SPECIALISTS["openai"]]["live"]["state"] == "live"
    assert seeded[SPECIALISTS["openai"]]["live"]["author"] == "import"
    assert (await client.get("/admin/specialists", headers=CAROL)).status_code == 403
    assert (await client.get("/admin/specialists")).status_code == 401

    created = await client.post("/admin/specialists", json={**NEW, "reason": "new desk"},
                                headers=ALICE)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    assert (created.json()["version"], created.json()["state"]) == (1, "proposed")
    assert (await chat(client, sid, CAROL)).status_code == 404  # not live yet

    own = await client.post(f"/admin/specialists/{sid}/versions/1/approve", headers=ALICE)
    assert own.status_code == 403 and own.json()["error"] == "self_approval"
    approved = await client.post(f"/admin/specialists/{sid}/versions/1/approve",
                                 json={"comment": "ok"}, headers=BOB)
    assert approved.status_code == 200 and approved.json()["state"] == "live"
    assert approved.json()["approver"] == BOB_HASH
    assert (await chat(client, sid, CAROL)).status_code == 200

    v2 = await client.post(f"/admin/specialists/{sid}/versions",
                           json={"system_prompt": "v2 prompt", "reason": "sharper"}, headers=ALICE)
    assert v2.status_code == 201 and v2.json()["version"] == 2
    assert v2.json()["state"] == "proposed"
    assert (await chat(client, sid, CAROL)).status_code == 200  # still v1
    tried = await client.post(f"/admin/specialists/{sid}/versions/2/try",
                              json={"message": "test"}, headers=BOB)
    assert tried.status_code == 200, tried.text
    assert _prompts(portal)[-3:] == ["v1 prompt", "v1 prompt", "v2 prompt"]
    assert (await client.post(f"/admin/specialists/{sid}/versions/2/reject",
                              headers=BOB)).status_code == 422  # a comment is required
    rejected = await client.post(f"/admin/specialists/{sid}/versions/2/reject",
                                 json={"comment": "too terse"}, headers=BOB)
    assert rejected.json()["state"] == "rejected"
    again = await client.post(f"/admin/specialists/{sid}/versions/2/approve", headers=BOB)
    assert again.status_code == 409 and again.json()["error"] == "version_conflict"

    v3 = await client.post(f"/admin/specialists/{sid}/versions",
                           json={"system_prompt": "v3 prompt", "reason": "reworded"},
                           headers=ALICE)
    assert v3.json()["version"] == 3
    await client.post(f"/admin/specialists/{sid}/versions/3/approve", headers=BOB)
    assert (await chat(client, sid, CAROL)).status_code == 200
    assert _prompts(portal)[-1] == "v3 prompt"

    back = await client.post(f"/admin/specialists/{sid}/versions",
                             json={"from_version": 1, "reason": "roll back"}, headers=ALICE)
    assert back.json()["version"] == 4 and back.json()["content"]["system_prompt"] == "v1 prompt"
    await client.post(f"/admin/specialists/{sid}/versions/4/approve", headers=BOB)
    assert (await chat(client, sid, CAROL)).status_code == 200
    assert _prompts(portal)[-1] == "v1 prompt"

    disabled = await client.post(f"/admin/specialists/{sid}/disable", headers=BOB)
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert (await chat(client, sid, CAROL)).status_code == 404
    assert sid not in {s["id"] for s in (await client.get("/specialists", headers=CAROL)).json()}
    await client.post(f"/admin/specialists/{sid}/enable", headers=ALICE)
    assert (await chat(client, sid, CAROL)).status_code == 200

    history = (await client.get(f"/admin/specialists/{sid}/versions", headers=ALICE)).json()
    assert [(v["version"], v["state"]) for v in history] == [
        (1, "superseded"), (2, "rejected"), (3, "superseded"), (4, "live")]
    assert {v["author"] for v in history} == {ALICE_HASH}
    assert [v["approver"] for v in history] == [BOB_HASH] * 4
    assert history[1]["comment"] == "too terse" and history[1]["reason"] == "sharper"
    assert history[1]["diff"] == {"system_prompt": {"from": "v1 prompt", "to": "v2 prompt"}}
    assert history[3]["diff"] == {"system_prompt": {"from": "v3 prompt", "to": "v1 prompt"}}
    assert all(v["created_at"] and v["decided_at"] for v in history)
    assert history[3]["live_at"] is not None and history[1]["live_at"] is None

    # Usage rows: each chat with the version and prompt hash that answered; the trial flagged.
    rows = [r for r in await usage_rows(portal, 6) if r["specialist_id"] == sid]
    assert [(r["specialist_version"], r["prompt_hash"], r["trial"]) for r in rows] == [
        (1, sha("v1 prompt"), False), (1, sha("v1 prompt"), False),
        (2, sha("v2 prompt"), True), (3, sha("v3 prompt"), False),
        (4, sha("v1 prompt"), False), (4, sha("v1 prompt"), False),
    ]

    audit = (await client.get("/admin/audit", params={"target": f"specialist/{sid}",
                                                     "limit": 100}, headers=BOB)).json()
    actions = [e["action"] for e in reversed(audit["entries"])]
    assert actions == [
        "specialist.create", "specialist.approve", "specialist.propose", "specialist.try",
        "specialist.reject", "specialist.propose", "specialist.approve", "specialist.propose",
        "specialist.approve", "specialist.disable", "specialist.enable",
    ]
    assert audit["total"] == len(actions)
    by_action = {e["action"]: e for e in reversed(audit["entries"])}  # the newest of each
    assert by_action["specialist.propose"]["before"] == {"live_version": 3}
    assert by_action["specialist.propose"]["after"]["rollback_of"] == 1
    assert by_action["specialist.disable"]["after"] == {"enabled": False}
    assert all(e["request_id"] for e in audit["entries"])
    paged = (await client.get("/admin/audit", params={"limit": 2, "offset": 1,
                                                     "action": "specialist.approve"},
                              headers=BOB)).json()
    assert len(paged["entries"]) == 2 and paged["entries"][0]["actor"] == BOB_HASH
    exported = await client.get("/admin/audit/export", params={"target": f"specialist/{sid}"},
                                headers=BOB)
    lines = list(csv.reader(io.StringIO(exported.text)))
    assert lines[0][:5] == ["seq", "at", "actor", "actor_method", "action"]
    assert [line[4] for line in lines[1:]] == actions
    assert (await client.get("/admin/audit", headers=CAROL)).status_code == 403


async def test_a_bad_proposal_is_a_422_with_its_fields_and_is_never_stored(
    portal_factory: Any, database_url: str
) -> None:
    portal = await governed_portal(portal_factory, database_url)
    client, sid = portal.client, SPECIALISTS["openai"]
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"provider": "openia"}, ["body", "provider"]),
        ({"temperature": 7}, ["body", "temperature"]),
        ({"model": ""}, ["body", "model"]),
        ({"colour": "red"}, ["body", "colour"]),
        ({"fallbacks": [{"specialist": sid}]}, ["body", "fallbacks"]),  # a cycle
        ({"fallbacks": [{"specialist": "99999999-9999-4999-8999-999999999999"}]},
         ["body", "fallbacks"]),
    ]
    for change, loc in cases:
        refused = await client.post(f"/admin/specialists/{sid}/versions",
                                    json={**change, "reason": "x"}, headers=ALICE)
        assert refused.status_code == 422, (change, refused.text)
        assert refused.json()["error"] == "invalid_specialist"
        assert loc in [d["loc"] for d in refused.json()["detail"]], refused.json()
    no_reason = await client.post(f"/admin/specialists/{sid}/versions",
                                  json={"model": "gpt-4o-mini"}, headers=ALICE)
    assert no_reason.status_code == 422
    missing = await client.post("/admin/specialists", json={"name": "x", "reason": "r"},
                                headers=ALICE)
    assert missing.status_code == 422
    assert {tuple(d["loc"]) for d in missing.json()["detail"]} >= {
        ("body", "provider"), ("body", "model")}
    history = (await client.get(f"/admin/specialists/{sid}/versions", headers=ALICE)).json()
    assert [v["version"] for v in history] == [1]
    unknown = "99999999-9999-4999-8999-999999999999"
    assert (await client.get(f"/admin/specialists/{unknown}/versions",
                             headers=ALICE)).status_code == 404
    gone = await client.post(f"/admin/specialists/{sid}/versions/9/approve", headers=BOB)
    assert gone.status_code == 404 and gone.json()["error"] == "version_not_found"


async def test_without_four_eyes_a_proposal_is_live_at_once_and_still_audited(
    portal_factory: Any, tmp_path: Any
) -> None:
    portal = await governed_portal(
        portal_factory, f"sqlite:///{tmp_path / 'none.db'}", specialist_approval="none")
    client = portal.client
    created = await client.post("/admin/specialists", json={**NEW, "reason": "r"},
                                headers=ALICE)
    assert created.json()["state"] == "live" and created.json()["approver"] == ALICE_HASH
    sid = created.json()["id"]
    assert (await chat(client, sid, CAROL)).status_code == 200
    audit = (await client.get("/admin/audit", params={"target": f"specialist/{sid}"},
                              headers=ALICE)).json()
    assert [e["action"] for e in reversed(audit["entries"])] == [
        "specialist.create", "specialist.approve"]


async def test_the_file_source_serves_the_file_and_refuses_changes(portal_factory: Any) -> None:
    portal = await portal_factory(
        auth_mode="header", trusted_frontends=["127.0.0.0/8"], admin_groups=["portal-admins"],
        specialists_source="file")
    refused = await portal.client.get("/admin/specialists", headers=ALICE)
    assert refused.status_code == 409 and refused.json()["error"] == "specialists_read_only"
    assert (await chat(portal.client, SPECIALISTS["openai"], CAROL)).status_code == 200


async def test_racing_approvals_leave_exactly_one_live_version(
    portal_factory: Any, database_url: str
) -> None:
    import asyncio

    dave = {"X-User-Email": "dave@example.com", "X-User-Groups": "portal-admins"}
    portal = await governed_portal(portal_factory, database_url)
    client, sid = portal.client, SPECIALISTS["anthropic"]
    for prompt in ("two", "three"):
        await client.post(f"/admin/specialists/{sid}/versions", headers=ALICE,
                          json={"system_prompt": prompt, "reason": "r"})
    answers = await asyncio.gather(
        client.post(f"/admin/specialists/{sid}/versions/2/approve", headers=BOB),
        client.post(f"/admin/specialists/{sid}/versions/2/approve", headers=dave),
        client.post(f"/admin/specialists/{sid}/versions/3/approve", headers=dave),
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 409], [a.text for a in answers]
    history = (await client.get(f"/admin/specialists/{sid}/versions", headers=ALICE)).json()
    assert [v["state"] for v in history].count("live") == 1
    duplicate = await client.post("/admin/specialists", headers=ALICE,
                                  json={**NEW, "id": sid, "reason": "again"})
    assert duplicate.status_code == 409


async def test_a_pii_policy_is_part_of_a_version_and_governs_once_live(
    portal_factory: Any, tmp_path: Any
) -> None:
    portal = await governed_portal(portal_factory, f"sqlite:///{tmp_path / 'pii.db'}")
    client = portal.client
    iban = "Please pay DE89 3704 0044 0532 0130 00 today"
    created = await client.post("/admin/specialists", json={**NEW, "reason": "r"},
                                headers=ALICE)
    sid = created.json()["id"]
    assert (await client.post(f"/admin/specialists/{sid}/versions/1/approve",
                              headers=BOB)).status_code == 200
    proposed = await client.post(f"/admin/specialists/{sid}/versions", headers=ALICE, json={
        "pii": {"mode": "block", "types": ["iban"]}, "reason": "no account numbers here"})
    assert proposed.status_code in (200, 201), proposed.text
    # Proposed, not live: the old policy (the default, mask) still answers.
    masked = await client.post("/chat/send", json={"specialist_id": sid, "message": iban},
                               headers=CAROL)
    assert masked.status_code == 200
    assert "DE89" not in str(portal.fakes["openai"].requests[-1].json)
    assert (await client.post(f"/admin/specialists/{sid}/versions/2/approve",
                              headers=BOB)).status_code == 200
    blocked = await client.post("/chat/send", json={"specialist_id": sid, "message": iban},
                                headers=CAROL)
    assert blocked.status_code == 422 and blocked.json()["error"] == "pii_detected"
    assert blocked.json()["types"] == ["iban"]
    assert len(portal.fakes["openai"].requests) == 1  # the blocked one went nowhere
    history = (await client.get(f"/admin/specialists/{sid}/versions", headers=BOB)).json()
    assert history[1]["diff"]["pii"]["to"]["mode"] == "block"
    bad = await client.post(f"/admin/specialists/{sid}/versions", headers=ALICE,
                            json={"pii": {"mode": "sometimes"}, "reason": "r"})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_specialist"


async def test_a_versions_rate_limit_is_live_with_the_version(
    portal_factory: Any, tmp_path: Any
) -> None:
    portal = await governed_portal(
        portal_factory, f"sqlite:///{tmp_path / 'limits.db'}", specialist_approval="none")
    client = portal.client
    created = await client.post("/admin/specialists", headers=ALICE, json={
        **NEW, "rate_limit": {"requests": 50, "window_seconds": 3600}, "reason": "new desk"})
    sid = created.json()["id"]
    answered = await chat(client, sid, CAROL)  # the new specialist's own limit, at once
    assert answered.status_code == 200 and answered.headers["x-ratelimit-limit"] == "50"
    lowered = await client.post(f"/admin/specialists/{sid}/versions", headers=ALICE, json={
        "rate_limit": {"requests": 1, "window_seconds": 3600}, "reason": "scarce model"})
    assert lowered.json()["state"] == "live"
    statuses = []
    for _ in range(3):
        response = await chat(client, sid, CAROL)
        statuses.append((response.status_code, response.headers["x-ratelimit-limit"]))
    # The live version's limit applies on the next request, no restart: one more fits.
    assert statuses == [(200, "1"), (429, "1"), (429, "1")]
