"""Each kind of budget enforced through the API: a group's cap is shared by its members, a
cost centre's by everyone in it (from the verified token), a specialist's by all its users."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from backend.tests.auth import idp as idp_module
from backend.tests.auth.conftest import bearer, jwt_settings
from backend.tests.auth.idp import IdP
from backend.tests.budgets.helpers import OPENAI, chat, exact_usage, headers, worst_case_usd
from backend.tests.budgets.test_api import portal_with
from backend.tests.chat.conftest import SPECIALISTS

JSON = {"content-type": "application/json"}
DEMO = SPECIALISTS["demo"]


@pytest.fixture
async def idp() -> AsyncIterator[IdP]:
    """A running IdP with one RSA key (the auth tests' fixture, for this folder too)."""
    async with idp_module.start() as provider:
        yield provider


def member(email: str, *groups: str) -> dict[str, str]:
    """Chat headers of a user a trusted front end vouches for, with their groups."""
    return {**headers(email), "X-User-Groups": ",".join(groups)}


async def test_a_group_budget_is_shared_by_its_members_only(portal_factory: Any) -> None:
    portal = await portal_with(
        portal_factory, auth_mode="header", trusted_frontends=["127.0.0.0/8"],
        budgets={"groups": {"eng": 2.5 * worst_case_usd()}},
    )
    exact_usage(portal.fakes["openai"])
    client = portal.client
    served = [(await client.post("/chat/send", content=chat(), headers=member(who, "eng")))
              .status_code for who in ("a@x.com", "b@x.com")]
    assert served == [200, 200]
    refused = await client.post("/chat/send", content=chat(), headers=member("c@x.com", "eng"))
    assert refused.status_code == 402
    body = refused.json()
    assert (body["error"], body["scope"], body["name"]) == ("budget_exceeded", "group", "eng")
    outsider = await client.post("/chat/send", content=chat(), headers=member("d@x.com", "ops"))
    assert outsider.status_code == 200  # not in the group: its cap is not theirs
    assert len(portal.fakes["openai"].requests) == 3


async def test_a_specialist_budget_caps_every_user_of_it(portal_factory: Any) -> None:
    portal = await portal_with(
        portal_factory, budgets={"specialists": {OPENAI: 1.5 * worst_case_usd()}},
    )
    exact_usage(portal.fakes["openai"])
    client = portal.client
    first = await client.post("/chat/send", content=chat(), headers=headers("a@x.com"))
    second = await client.post("/chat/send", content=chat(), headers=headers("b@x.com"))
    assert (first.status_code, second.status_code) == (200, 402)
    assert (second.json()["scope"], second.json()["name"]) == ("specialist", OPENAI)
    demo = await client.post("/chat/send", content=chat(specialist=DEMO), headers=JSON)
    assert demo.status_code == 200  # another specialist has its own (no) budget


async def test_a_cost_centre_budget_comes_from_the_verified_token(
    idp: IdP, portal_factory: Any
) -> None:
    portal = await portal_with(
        portal_factory, **jwt_settings(idp),
        budgets={"cost_centers": {"CC-1": 1.5 * worst_case_usd()}},
    )
    exact_usage(portal.fakes["openai"])
    client = portal.client
    ann = {**JSON, **bearer(idp.token(sub="ann", email="ann@x.com", cost_center="CC-1"))}
    bob = {**JSON, **bearer(idp.token(sub="bob", email="bob@x.com", cost_center="CC-1"))}
    other = {**JSON, **bearer(idp.token(sub="cy", email="cy@x.com", cost_center="CC-2"))}
    assert (await client.post("/chat/send", content=chat(), headers=ann)).status_code == 200
    refused = await client.post("/chat/send", content=chat(), headers=bob)
    assert refused.status_code == 402
    assert (refused.json()["scope"], refused.json()["name"]) == ("cost_center", "CC-1")
    assert (await client.post("/chat/send", content=chat(), headers=other)).status_code == 200
    # A header cannot move a user to a cost centre with room: only the token names it.
    forged = {**bob, "X-User-Cost-Center": "CC-2"}
    assert (await client.post("/chat/send", content=chat(), headers=forged)).status_code == 402
