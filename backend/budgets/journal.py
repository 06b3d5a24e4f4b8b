"""The database side of budgets: spend per scope from usage_log (the truth the counters are
rebuilt from), and the admin API's limits with their audit trail."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.budgets.base import Scope, to_nano
from backend.budgets.periods import Period
from backend.budgets.table import budget_audit, budget_limits
from backend.database.audit_hook import AuditHook
from backend.usage.table import usage_log

_c = usage_log.c
# usage_log's column holding each scope's name (groups are a JSON list, summed apart).
_SCOPE_COLUMNS = {"user": _c.user_email_hash, "cost_center": _c.cost_center,
                  "specialist": _c.specialist_id}


@dataclass(frozen=True, slots=True)
class LimitRow:
    """A limit set through the admin API."""

    scope: Scope
    name: str
    limit_usd: float
    updated_at: datetime
    updated_by: str


async def spent_in(engine: AsyncEngine, period: Period) -> dict[str, int]:
    """Nano-USD spent in `period` per counter field (`scope:name`), from usage_log."""
    window = (_c.timestamp >= period.start, _c.timestamp < period.end,
              _c.estimated_cost_usd.is_not(None))
    total = func.sum(_c.estimated_cost_usd)
    spent: dict[str, int] = defaultdict(int)
    async with engine.connect() as conn:
        for scope, column in _SCOPE_COLUMNS.items():
            rows = await conn.execute(
                select(column, total).where(*window, column.is_not(None)).group_by(column)
            )
            for name, usd in rows:
                spent[f"{scope}:{name}"] += to_nano(usd or 0.0)
        rows = await conn.execute(
            select(_c.user_groups, total).where(*window, _c.user_groups.is_not(None))
            .group_by(_c.user_groups)
        )
        for groups, usd in rows:  # few distinct memberships: summed per group here
            for group in orjson.loads(groups):
                spent[f"group:{group}"] += to_nano(usd or 0.0)
        portal = (await conn.execute(select(total).where(*window))).scalar()
        spent["portal:portal"] = to_nano(portal or 0.0)
    return dict(spent)


async def limits(engine: AsyncEngine) -> list[LimitRow]:
    """Every limit set through the admin API."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(budget_limits).order_by(
            budget_limits.c.scope, budget_limits.c.name))
        return [LimitRow(r.scope, r.name, r.limit_usd, _aware(r.updated_at), r.updated_by)
                for r in rows]


async def set_limit(
    engine: AsyncEngine, *, scope: Scope, name: str, limit_usd: float | None, actor: str,
    audit: AuditHook | None = None,
) -> tuple[float | None, float | None]:
    """Set (None: delete) one API limit and audit it in the same transaction; (old, new).

    `budget_audit` keeps the budget's own history (GET /admin/budgets/audit); `audit`, when
    given, also appends the change to the tamper-evident chain, in the same transaction.
    """
    now = datetime.now(UTC)
    key = (budget_limits.c.scope == scope, budget_limits.c.name == name)
    async with engine.begin() as conn:
        old = (await conn.execute(select(budget_limits.c.limit_usd).where(*key))).scalar()
        if limit_usd is None:
            await conn.execute(delete(budget_limits).where(*key))
        elif old is None:
            await conn.execute(insert(budget_limits).values(
                scope=scope, name=name, limit_usd=limit_usd, updated_at=now, updated_by=actor))
        else:
            await conn.execute(update(budget_limits).where(*key).values(
                limit_usd=limit_usd, updated_at=now, updated_by=actor))
        await conn.execute(insert(budget_audit).values(
            at=now, actor=actor, action="delete" if limit_usd is None else "set",
            scope=scope, name=name, old_usd=old, new_usd=limit_usd))
        if audit is not None:
            await audit(conn, None if old is None else {"limit_usd": old},
                        None if limit_usd is None else {"limit_usd": limit_usd})
    return old, limit_usd


async def audit(engine: AsyncEngine, *, limit: int = 200) -> list[dict[str, object]]:
    """The latest changes to API limits, newest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(budget_audit).order_by(budget_audit.c.id.desc()).limit(limit))
        return [{**row._asdict(), "at": _aware(row.at).isoformat()} for row in rows]


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
