"""AUTH_MODE=header: the user and groups headers are believed from a trusted front end
(by address or shared secret) and refused with 401 from anyone else."""

from __future__ import annotations

from typing import Any

from backend.tests.chat.conftest import SPECIALISTS
from backend.tests.transports.conftest import usage_rows
from backend.usage.identity import hash_email

CHAT = {"specialist_id": SPECIALISTS["openai"], "message": "Hello"}
SECRET = "front-end-shared-secret-1"
USER = {"X-User-Email": "bob@example.com", "X-User-Groups": "staff, risk"}


async def test_headers_are_believed_with_the_shared_secret_and_refused_without(
    portal_factory: Any,
) -> None:
    # The tests' peer is 127.0.0.1, so no TRUSTED_FRONTENDS: only the secret can trust it.
    portal = await portal_factory(auth_mode="header", frontend_shared_secret=SECRET)
    trusted = {**USER, "X-Frontend-Secret": SECRET}
    me = (await portal.client.get("/me", headers=trusted)).json()
    assert (me["email"], me["groups"], me["auth_method"]) == (
        "bob@example.com", ["risk", "staff"], "header")
    assert (await portal.client.post("/chat/send", json=CHAT, headers=trusted)).status_code == 200
    for headers in (USER, {**USER, "X-Frontend-Secret": SECRET[:-1] + "x"}, {}):
        refused = await portal.client.post("/chat/send", json=CHAT, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.json()["error"] in ("untrusted_frontend", "token_missing")
    no_user = await portal.client.post(
        "/chat/send", json=CHAT, headers={"X-Frontend-Secret": SECRET})
    assert no_user.status_code == 401 and no_user.json()["error"] == "token_missing"
    assert len(portal.fakes["openai"].requests) == 1
    rows = await usage_rows(portal, 1)
    assert [(r["user_email_hash"], r["auth_method"]) for r in rows] == [
        (hash_email(b"test-secret", "bob@example.com"), "header")]


async def test_a_trusted_address_needs_no_secret_and_others_are_refused(
    portal_factory: Any,
) -> None:
    trusting = await portal_factory(auth_mode="header", trusted_frontends=["127.0.0.0/8"])
    assert (await trusting.client.post("/chat/send", json=CHAT, headers=USER)).status_code == 200
    elsewhere = await portal_factory(auth_mode="header", trusted_frontends=["10.1.0.0/16"])
    refused = await elsewhere.client.post("/chat/send", json=CHAT, headers=USER)
    assert refused.status_code == 401 and refused.json()["error"] == "untrusted_frontend"


async def test_none_mode_keeps_the_seed_contract(portal_factory: Any) -> None:
    portal = await portal_factory()
    ok = await portal.client.post("/chat/send", json=CHAT, headers={
        "X-User-Email": "carol@example.com", "X-User-Groups": "portal-admins",
        "Authorization": "Bearer unused"})
    assert ok.status_code == 200
    me = (await portal.client.get("/me", headers={"X-User-Groups": "portal-admins"})).json()
    assert me["groups"] == [] and me["is_admin"] is False and me["auth_method"] == "none"
    rows = await usage_rows(portal, 1)
    assert rows[0]["user_email_hash"] == hash_email(b"test-secret", "carol@example.com")
    assert rows[0]["auth_method"] == "none"
