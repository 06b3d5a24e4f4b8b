"""The PII guard's work shows in /metrics: distinct values per kind and action, never a value."""

from __future__ import annotations

import re

from backend.tests.chat.conftest import SPECIALISTS, Portal

CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"


def value(text: str, kind: str, action: str) -> float:
    """portal_pii_values_total for one kind and action."""
    pattern = rf'^portal_pii_values_total{{action="{action}",type="{kind}"}} (\S+)$'
    found = re.search(pattern, text, flags=re.MULTILINE)
    assert found, f"no series for {kind} {action}"
    return float(found.group(1))


async def test_masked_values_are_counted_by_kind_and_never_shown(portal: Portal) -> None:
    before = (await portal.client.get("/metrics")).text
    assert value(before, "card", "masked") == 0 and value(before, "iban", "masked") == 0
    message = f"Refund card {CARD} twice, then pay {IBAN}; card {CARD} again."
    response = await portal.client.post(
        "/chat/send", json={"specialist_id": SPECIALISTS["openai"], "message": message}
    )
    assert response.status_code == 200
    after = (await portal.client.get("/metrics")).text
    # One distinct card (written twice) and one IBAN.
    assert value(after, "card", "masked") == 1 and value(after, "iban", "masked") == 1
    assert value(after, "email", "masked") == 0
    assert "4111 1111" not in after and "3704" not in after
