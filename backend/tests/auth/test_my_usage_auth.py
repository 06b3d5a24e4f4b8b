"""GET /me/usage under AUTH_MODE=jwt: the verified token decides whose spend it is."""

from __future__ import annotations

import pytest

from backend.tests.auth.conftest import bearer
from backend.tests.auth.idp import IdP
from backend.tests.chat.conftest import SPECIALISTS, Portal
from backend.tests.transports.conftest import usage_rows

CHAT = {"specialist_id": SPECIALISTS["openai"], "message": "Hello"}


async def test_a_token_holder_sees_their_own_chats_and_no_one_elses(
    idp: IdP, jwt_portal: Portal
) -> None:
    alice = bearer(idp.token())
    bob = bearer(idp.token(sub="user-456", email="bob@example.com"))
    for _ in range(2):
        sent = await jwt_portal.client.post("/chat/send", json=CHAT, headers=alice)
        assert sent.status_code == 200, sent.text
    rows = await usage_rows(jwt_portal, 2)
    mine = (await jwt_portal.client.get("/me/usage", headers=alice)).json()
    assert mine["requests"] == 2
    assert mine["input_tokens"] == sum(r["input_tokens"] for r in rows)
    assert mine["output_tokens"] == sum(r["output_tokens"] for r in rows)
    assert mine["cost_usd"] == pytest.approx(sum(r["estimated_cost_usd"] for r in rows))
    # Bob's token, with Alice's email in the header none mode would believe: Bob's own zero.
    theirs = await jwt_portal.client.get(
        "/me/usage", headers={**bob, "X-User-Email": "alice@example.com"}
    )
    assert theirs.status_code == 200 and theirs.json()["requests"] == 0
    missing = await jwt_portal.client.get("/me/usage")
    assert missing.status_code == 401 and missing.json()["error"] == "token_missing"
