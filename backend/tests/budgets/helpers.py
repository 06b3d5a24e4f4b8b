"""Shared by the budget tests: prices that make each request's cost its exact worst case."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.tests.chat.conftest import MODELS, SPECIALISTS, SYSTEM_PROMPT
from backend.tests.fakes.script import FakeState
from backend.usage.identity import hash_email
from backend.usage.table import usage_log

OPENAI = SPECIALISTS["openai"]
PRICES = {MODELS["openai"]: {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
MAX_OUTPUT = 256  # the test specialists' max_output_tokens
OVERHEAD = 16  # BUDGET_MESSAGE_OVERHEAD_TOKENS's default
MESSAGE = "hello"


def input_tokens(message: str = MESSAGE) -> int:
    """The reserved input bound for a one-message chat with the test specialist."""
    return len(SYSTEM_PROMPT.encode()) + len(message.encode()) + 2 * OVERHEAD


def worst_case_usd(message: str = MESSAGE) -> float:
    """What one chat reserves: the input bound and max_output_tokens at PRICES."""
    return (input_tokens(message) * 1.0 + MAX_OUTPUT * 2.0) / 1_000_000


def exact_usage(fake: FakeState, message: str = MESSAGE) -> None:
    """Make the fake report the worst case, so a request costs exactly what it reserved."""
    fake.script.input_tokens = input_tokens(message)
    fake.script.output_tokens = MAX_OUTPUT


def chat(message: str = MESSAGE, specialist: str = OPENAI) -> bytes:
    """A /chat body."""
    return orjson.dumps({"specialist_id": specialist, "message": message})


def user_hash(email: str) -> str:
    """The test settings' keyed hash of an email."""
    return hash_email(b"test-secret", email)


async def spent_by(engine: AsyncEngine, email: str) -> tuple[int, float]:
    """(rows, summed cost) of one user's usage rows."""
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(func.count(), func.coalesce(func.sum(usage_log.c.estimated_cost_usd), 0.0))
            .where(usage_log.c.user_email_hash == user_hash(email))
        )).one()
    return int(row[0]), float(row[1])


def headers(email: str, **extra: Any) -> dict[str, str]:
    """JSON chat headers as `email` (AUTH_MODE=none)."""
    return {"content-type": "application/json", "x-user-email": email, **extra}
