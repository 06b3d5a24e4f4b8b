"""Personal API keys: minted with a JWT, used by the official OpenAI SDK against /v1,
listed, revoked and then refused; only a keyed hash is ever stored (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
import orjson
import pytest
from sqlalchemy import inspect, select, text
from websockets.asyncio.client import connect

from backend.auth.identity import user_hash
from backend.auth.table import api_keys
from backend.database.engine import make_engine
from backend.governance.audit import verify
from backend.tests.auth.conftest import ADMIN_GROUP, bearer, jwt_settings
from backend.tests.auth.idp import IdP
from backend.tests.chat.conftest import SPECIALISTS, Portal
from backend.tests.transports.conftest import answer, usage_rows, ws_url


async def _every_stored_text(database_url: str) -> str:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            dumped = []
            for table in tables:
                rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()
                dumped += [repr(tuple(row)) for row in rows]
        return "\n".join(dumped)
    finally:
        await engine.dispose()


async def test_a_key_works_with_the_openai_sdk_until_revoked(
    idp: IdP, portal_factory: Any, database_url: str
) -> None:
    portal: Portal = await portal_factory(**jwt_settings(idp), database_url=database_url)
    owner = bearer(idp.token(groups=["staff"], cost_center="CC-9"))
    created = await portal.client.post("/keys", json={"name": "notebook"}, headers=owner)
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith("aip_") and len(key) >= 4 + 43  # 256 random bits, URL-safe
    assert body["prefix"] == key[:12] and body["name"] == "notebook"

    client = openai.AsyncOpenAI(base_url=f"{portal.url}/v1", api_key=key, max_retries=0)
    try:
        reply = await client.chat.completions.create(
            model=SPECIALISTS["openai"], messages=[{"role": "user", "content": "Hello"}]
        )
        assert reply.choices[0].message.content and reply.usage is not None
        assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
        models = await client.models.list()
        assert SPECIALISTS["openai"] in {m.id for m in models.data}

        listed = (await portal.client.get("/keys", headers=owner)).json()
        assert [(k["id"], k["prefix"]) for k in listed] == [(body["id"], body["prefix"])]
        assert listed[0]["last_used_at"] is not None and "key" not in listed[0]
        # The key acts as its owner: same user hash, cost centre, and a method of its own.
        rows = await usage_rows(portal, 1)
        me = (await portal.client.get("/me", headers=bearer(key))).json()
        assert me["auth_method"] == "api_key" and me["groups"] == ["staff"]
        assert rows[0]["auth_method"] == "api_key" and rows[0]["cost_center"] == "CC-9"
        jwt_me = await portal.client.post("/chat/send", headers=owner, json={
            "specialist_id": SPECIALISTS["demo"], "message": "hi"})
        assert jwt_me.status_code == 200
        rows = await usage_rows(portal, 2)
        assert rows[0]["user_email_hash"] == rows[1]["user_email_hash"] is not None

        stored = await _every_stored_text(database_url)
        assert key not in stored and key[12:] not in stored  # no key, nor its secret part

        revoked = await portal.client.delete(f"/keys/{body['id']}", headers=owner)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        started = time.monotonic()
        while True:
            try:
                await client.models.list()
            except openai.AuthenticationError as exc:
                assert exc.status_code == 401
                break
            assert time.monotonic() - started < 5, "a revoked key still works after 5 s"
            await asyncio.sleep(0.2)
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model=SPECIALISTS["openai"], messages=[{"role": "user", "content": "Hi"}]
            )
        assert len(portal.fakes["openai"].requests) == 1
    finally:
        await client.close()


async def test_keys_are_private_to_their_owner_and_admins_see_all(
    idp: IdP, portal_factory: Any
) -> None:
    portal: Portal = await portal_factory(**jwt_settings(idp))
    alice = bearer(idp.token(sub="alice", email="alice@example.com"))
    bob = bearer(idp.token(sub="bob", email="bob@example.com"))
    admin = bearer(idp.token(sub="root", email="root@example.com", groups=[ADMIN_GROUP]))
    key = (await portal.client.post("/keys", json={"name": "a"}, headers=alice)).json()
    assert (await portal.client.get("/keys", headers=bob)).json() == []
    stolen = await portal.client.delete(f"/keys/{key['id']}", headers=bob)
    assert stolen.status_code == 404 and stolen.json()["error"] == "key_not_found"
    # A key cannot mint another (a leaked key would outlive its revocation).
    minted = await portal.client.post("/keys", json={"name": "b"}, headers=bearer(key["key"]))
    assert minted.status_code == 403
    assert (await portal.client.get("/admin/keys", headers=bob)).status_code == 403
    every = (await portal.client.get("/admin/keys", headers=admin)).json()
    assert [k["id"] for k in every] == [key["id"]] and "key" not in every[0]
    gone = await portal.client.delete(f"/admin/keys/{key['id']}", headers=admin)
    assert gone.status_code == 200
    again = await portal.client.delete(f"/admin/keys/{key['id']}", headers=admin)
    assert again.status_code == 200  # already revoked: nothing changes, nothing audited

    # Minting and revoking are in the tamper-evident chain, with who and which request.
    audit = (await portal.client.get("/admin/audit", params={"target": f"api_key/{key['id']}"},
                                     headers=admin)).json()
    entries = list(reversed(audit["entries"]))
    assert [e["action"] for e in entries] == ["api_key.create", "api_key.revoke"]
    actors = [user_hash(b"test-secret", email=f"{who}@example.com", user_id=who)
              for who in ("alice", "root")]
    assert [e["actor"] for e in entries] == actors
    assert entries[0]["after"]["prefix"] == key["prefix"] and entries[0]["before"] is None
    assert entries[1]["before"]["revoked_at"] is None and entries[1]["after"]["revoked_at"]
    assert all(e["request_id"] for e in entries)
    assert key["key"] not in str(audit) and key["key"][12:] not in str(audit)
    engine = make_engine(portal.settings.database_url)
    try:
        assert (await verify(engine)).broken is None
    finally:
        await engine.dispose()
    await asyncio.sleep(2.1)  # past the per-worker cache
    refused = await portal.client.get("/me", headers=bearer(key["key"]))
    assert refused.status_code == 401 and refused.json()["error"] == "token_invalid"


async def test_an_expired_key_is_refused(idp: IdP, portal_factory: Any) -> None:
    portal: Portal = await portal_factory(**jwt_settings(idp))
    owner = bearer(idp.token())
    soon = time.time() + 1.5
    from datetime import UTC, datetime

    expires = datetime.fromtimestamp(soon, UTC).isoformat()
    key = (await portal.client.post(
        "/keys", json={"name": "short", "expires_at": expires}, headers=owner)).json()["key"]
    assert (await portal.client.get("/me", headers=bearer(key))).status_code == 200
    await asyncio.sleep(max(0.0, soon - time.time()) + 0.1)
    expired = await portal.client.get("/me", headers=bearer(key))
    assert expired.status_code == 401 and expired.json()["error"] == "token_expired"
    past = await portal.client.post(
        "/keys", json={"name": "past", "expires_at": "2020-01-01T00:00:00Z"}, headers=owner)
    assert past.status_code == 422
    engine = make_engine(portal.settings.database_url)
    try:
        async with engine.connect() as conn:
            hashes = (await conn.execute(select(api_keys.c.key_hash))).scalars().all()
        assert len(hashes) == 1 and key not in hashes[0]
    finally:
        await engine.dispose()


async def test_a_key_is_accepted_on_every_chat_way_in(idp: IdP, portal_factory: Any) -> None:
    portal: Portal = await portal_factory(**jwt_settings(idp))
    owner = bearer(idp.token(groups=["staff"], cost_center="CC-4"))
    key = (await portal.client.post("/keys", json={"name": "bot"}, headers=owner)).json()["key"]
    body = {"specialist_id": SPECIALISTS["openai"], "message": "Hello"}
    sent = await portal.client.post("/chat/send", json=body, headers=bearer(key))
    assert sent.status_code == 200 and sent.json()["content"]
    streamed = await portal.client.post("/chat/stream", json=body, headers=bearer(key))
    events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert streamed.status_code == 200 and orjson.loads(events[-1])["is_final"] is True
    chat = orjson.dumps(body).decode()
    async with connect(ws_url(portal), additional_headers=bearer(key)) as ws:
        await ws.send(chat)
        _, final = await answer(ws)
        assert final["is_final"] is True
    async with connect(ws_url(portal)) as ws:  # the first-message form takes a key too
        await ws.send(orjson.dumps({"type": "auth", "token": key}).decode())
        await ws.send(chat)
        _, final = await answer(ws)
        assert final["is_final"] is True
    rows = await usage_rows(portal, 4)
    assert {(r["auth_method"], r["cost_center"]) for r in rows} == {("api_key", "CC-4")}
    assert len(portal.fakes["openai"].requests) == 4


async def test_a_key_revoked_on_one_worker_is_refused_on_another_within_5_s(
    idp: IdP, portal_factory: Any, database_url: str
) -> None:
    # Two apps on one database: each keeps its own short cache of keys it has seen.
    first: Portal = await portal_factory(**jwt_settings(idp), database_url=database_url)
    second: Portal = await portal_factory(**jwt_settings(idp), database_url=database_url)
    owner = bearer(idp.token())
    created = (await first.client.post("/keys", json={"name": "cli"}, headers=owner)).json()
    assert (await second.client.get("/me", headers=bearer(created["key"]))).status_code == 200
    revoked = await first.client.delete(f"/keys/{created['id']}", headers=owner)
    assert revoked.status_code == 200
    started = time.monotonic()
    while (await second.client.get("/me", headers=bearer(created["key"]))).status_code == 200:
        assert time.monotonic() - started < 5, "the other worker still takes a revoked key"
        await asyncio.sleep(0.1)
    refused = await second.client.get("/me", headers=bearer(created["key"]))
    assert refused.status_code == 401 and refused.json()["error"] == "token_invalid"
