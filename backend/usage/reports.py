"""Spend reports over `usage_log`: sums per day, user, specialist, model or provider; CSV.

Both read a time range [start, end) through the timestamp index; the optional filters
narrow it through the (key, timestamp) indexes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, Select, case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.usage.table import COLUMNS, usage_log

GroupBy = Literal["day", "user", "specialist", "model", "provider", "cost_center"]
GROUPINGS: tuple[GroupBy, ...] = (
    "day", "user", "specialist", "model", "provider", "cost_center",
)

_c = usage_log.c


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A time range [start, end), in UTC, and optional exact-match filters."""

    start: datetime
    end: datetime
    specialist_id: str | None = None
    user_email_hash: str | None = None
    model: str | None = None
    provider: str | None = None

    def where(self) -> list[ColumnElement[bool]]:
        """The WHERE clauses this query means."""
        # SQLite keeps the UTC wall-clock digits only, so the bounds must be UTC too.
        clauses = [
            _c.timestamp >= self.start.astimezone(UTC), _c.timestamp < self.end.astimezone(UTC)
        ]
        for name in ("specialist_id", "user_email_hash", "model", "provider"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(_c[name] == value)
        return clauses


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One group's totals; `cost_usd` sums the priced rows, `unpriced_requests` counts the rest."""

    key: str | None
    label: str | None
    requests: int
    failures: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced_requests: int
    # Of `failures`, those the provider did not charge (recorded with 0 tokens and cost).
    unbilled_failures: int = 0
    # Answers refused or blocked (finish_reason refusal / content_filter), with text or not.
    refusals: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None


def _group_key(group_by: GroupBy, dialect: str) -> ColumnElement[Any]:
    if group_by == "day":
        if dialect == "postgresql":
            return func.to_char(func.timezone("UTC", _c.timestamp), "YYYY-MM-DD")
        return func.substr(_c.timestamp, 1, 10)  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC
    column = {
        "user": _c.user_email_hash, "specialist": _c.specialist_id,
        "model": _c.model, "provider": _c.provider, "cost_center": _c.cost_center,
    }[group_by]
    return column


def summary_statement(query: UsageQuery, group_by: GroupBy, dialect: str) -> Select[Any]:
    """The GROUP BY query behind GET /usage/summary."""
    key = _group_key(group_by, dialect).label("key")
    label = func.max(_c.specialist_name) if group_by == "specialist" else None
    return (
        select(
            key,
            (label if label is not None else key).label("label"),
            func.count().label("requests"),
            func.sum(case((_c.success.is_(False), 1), else_=0)).label("failures"),
            func.coalesce(func.sum(_c.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(_c.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(_c.estimated_cost_usd), 0.0).label("cost_usd"),
            func.sum(case((_c.estimated_cost_usd.is_(None), 1), else_=0)).label("unpriced"),
            func.sum(case((_c.billed.is_(False), 1), else_=0)).label("unbilled"),
            func.sum(
                case((_c.finish_reason.in_(("refusal", "content_filter")), 1), else_=0)
            ).label("refusals"),
        )
        .where(*query.where())
        .group_by(key)
    )


# Percentiles by nearest rank: the p-th is the value at rank ceil(p * n) of the sorted
# latencies. Both databases run the same window functions, so they agree to the digit
# (PostgreSQL's percentile_cont interpolates, and SQLite has no percentile at all); the
# rank test is integer arithmetic, since SQLite's ceil() is an optional build flag.
PERCENTILES = (("p50", 50), ("p95", 95))


def latency_statement(
    query: UsageQuery, group_by: GroupBy | None, dialect: str
) -> Select[Any]:
    """p50 and p95 of the successful requests' latency per group (None: over the range)."""
    key: ColumnElement[Any] = (
        _group_key(group_by, dialect) if group_by else literal_column("''")
    )
    ranked = (
        select(
            key.label("key"),
            _c.latency_ms.label("latency_ms"),
            func.row_number().over(partition_by=key, order_by=_c.latency_ms).label("rank"),
            func.count().over(partition_by=key).label("n"),
        )
        .where(*query.where(), _c.success.is_(True))
        .subquery()
    )
    r = ranked.c
    columns = [
        func.min(case((r.rank * 100 >= r.n * percent, r.latency_ms))).label(name)
        for name, percent in PERCENTILES
    ]
    return select(r.key, *columns).group_by(r.key)


async def summarize(
    engine: AsyncEngine, query: UsageQuery, group_by: GroupBy
) -> tuple[list[SummaryRow], SummaryRow]:
    """Totals per group, ordered by key (no-key group, e.g. anonymous users, first), and
    the range's totals, each with its latency percentiles."""
    dialect = engine.dialect.name
    async with engine.connect() as conn:
        rows = (await conn.execute(summary_statement(query, group_by, dialect))).all()
        latency = {
            row.key: (row.p50, row.p95)
            for row in await conn.execute(latency_statement(query, group_by, dialect))
        }
        overall = (await conn.execute(latency_statement(query, None, dialect))).first()
    result = [
        SummaryRow(
            key=None if row.key is None else str(row.key),
            label=None if row.label is None else str(row.label),
            requests=int(row.requests), failures=int(row.failures),
            input_tokens=int(row.input_tokens), output_tokens=int(row.output_tokens),
            cost_usd=float(row.cost_usd), unpriced_requests=int(row.unpriced),
            unbilled_failures=int(row.unbilled), refusals=int(row.refusals),
            latency_p50_ms=_float(latency.get(row.key, (None, None))[0]),
            latency_p95_ms=_float(latency.get(row.key, (None, None))[1]),
        )
        for row in rows
    ]
    result.sort(key=lambda r: (r.key is not None, r.key or ""))
    total = totals(result)
    if overall is not None:
        total = replace(
            total, latency_p50_ms=_float(overall.p50), latency_p95_ms=_float(overall.p95)
        )
    return result, total


async def own_totals(
    engine: AsyncEngine, *, user_hash: str, start: datetime, end: datetime
) -> SummaryRow:
    """One user's totals over [start, end): /usage/summary's sums, filtered to their hash."""
    query = UsageQuery(start=start, end=end, user_email_hash=user_hash)
    _, total = await summarize(engine, query, "user")
    return total


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def totals(rows: Sequence[SummaryRow]) -> SummaryRow:
    """The sum of every group (so the totals always equal the groups shown).

    Percentiles do not add up: `summarize` computes the range's own.
    """
    return SummaryRow(
        key=None, label=None,
        requests=sum(r.requests for r in rows), failures=sum(r.failures for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cost_usd=sum(r.cost_usd for r in rows),
        unpriced_requests=sum(r.unpriced_requests for r in rows),
        unbilled_failures=sum(r.unbilled_failures for r in rows),
        refusals=sum(r.refusals for r in rows),
    )


async def export_csv(
    engine: AsyncEngine, query: UsageQuery, *, chunk_rows: int = 1_000
) -> AsyncIterator[bytes]:
    """The rows as CSV (RFC 4180, header first), streamed from a server-side cursor."""
    yield _csv_lines([COLUMNS])
    statement = (
        select(usage_log).where(*query.where()).order_by(_c.timestamp, _c.id)
        .execution_options(yield_per=chunk_rows)
    )
    async with engine.connect() as conn:
        result = await conn.stream(statement)
        async for rows in result.partitions():
            yield _csv_lines(_cells(row) for row in rows)


def _cells(row: Row[Any]) -> list[str]:
    return [_cell(value) for value in row]


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV
# Injection"); the quote itself is included so that stripping one leading quote from a
# text cell always gives the stored value back.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading `'` before a formula character."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _cell(value: object) -> str:
    # One spelling per type, so a CSV read back gives the same values on both databases.
    # Only text is neutralised: numbers (a negative one starts with "-") are our own
    # spelling of a number, never text an upstream or a config file chose.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite: naive UTC
        return stamp.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return repr(value)  # shortest form that reads back to the same double
    if isinstance(value, str):
        return neutralise(value)
    return str(value)


def _csv_lines(rows: Any) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()
