"""A call the provider refused before generating anything costs nothing and holds nothing:
its reservation is released (settled to the usage record's 0), so failures cannot lock a
user out of a budget that still has room."""

from __future__ import annotations

from typing import Any

from backend.tests.budgets.helpers import OPENAI, exact_usage, worst_case_usd
from backend.tests.budgets.test_api import agree, portal_with


async def test_unbilled_failures_release_their_reservation(portal_factory: Any) -> None:
    # Room for exactly two answers, reserved at their worst case.
    portal = await portal_with(
        portal_factory, budget_user_usd=2.5 * worst_case_usd(),
        breaker_failure_threshold=0,  # the failures must reach the fake, not an open circuit
    )
    fake = portal.fakes["openai"]
    exact_usage(fake)
    user = {"x-user-email": "unlucky@example.com"}
    body = {"specialist_id": OPENAI, "message": "hello"}
    fake.script.error_status = 500  # refused before any generation: billed=false, cost 0
    for _ in range(6):  # more failures than the budget holds answers
        failed = await portal.client.post("/chat/send", json=body, headers=user)
        assert failed.status_code == 503
    fake.script.error_status = None
    answered = [
        (await portal.client.post("/chat/send", json=body, headers=user)).status_code
        for _ in range(3)
    ]
    # Both answers that fit are still admitted; the third is over the budget.
    assert answered == [200, 200, 402]
    cost = await agree(portal, "unlucky@example.com", 8)
    assert cost <= 2.5 * worst_case_usd()
