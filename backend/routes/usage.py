"""GET /usage/summary, /usage/export and /usage/status: the admin's spend reports.

For admins: members of ADMIN_GROUPS, or `Authorization: Bearer <ADMIN_TOKEN>` (break-glass);
while neither can exist they answer 404.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, BeforeValidator, Field
from starlette.responses import StreamingResponse

from backend.api.deps import ServicesDep, require_admin
from backend.chat.schemas import ErrorBody
from backend.errors import InvalidRequest
from backend.usage.reports import GroupBy, SummaryRow, UsageQuery, export_csv, summarize

router = APIRouter(prefix="/usage", tags=["usage"], dependencies=[Depends(require_admin)])

DEFAULT_RANGE = timedelta(days=30)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)
_AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong admin bearer token"},
    403: {"model": ErrorBody, "description": "Signed in, but not in ADMIN_GROUPS"},
    404: {"model": ErrorBody, "description": "Neither ADMIN_TOKEN nor ADMIN_GROUPS is set"},
    429: {"model": ErrorBody, "description": "Too many failed admin authentications (Retry-After)"},
}
_ERRORS: dict[int | str, dict[str, object]] = {
    **_AUTH_ERRORS,
    422: {"model": ErrorBody, "description": "Bad query parameters, or `from` not before `to`"},
}


def _date_time_text(value: object) -> object:
    # pydantic would also read a bare number ("0.5") as a Unix timestamp; the schema says an
    # ISO 8601 date-time string, so only that is accepted.
    if not isinstance(value, str) or not value[:4].isdigit() or value[4:5] != "-":
        raise ValueError("must be an ISO 8601 date-time, such as 2026-11-01T00:00:00Z")
    return value


# An ISO 8601 date-time query parameter, strictly (also for /admin/audit).
DateTimeText = Annotated[datetime, BeforeValidator(_date_time_text)]


class SpendTotals(BaseModel):
    """Requests and what they cost: the sums every spend report gives."""

    requests: int
    failures: int
    input_tokens: int
    output_tokens: int
    cost_usd: float = Field(description="Sum of the priced requests' estimated cost")
    unpriced_requests: int = Field(description="Requests whose price is unknown (not in cost_usd)")


class SummaryGroup(SpendTotals):
    """Totals of one group (or of all groups, for `totals`)."""

    key: str | None = Field(description="The day (YYYY-MM-DD, UTC), user hash, specialist id, "
                            "model, provider or cost centre; null for requests without one "
                            "(anonymous users, no cost centre claim)")
    label: str | None = Field(description="The specialist's name when grouping by specialist")
    unbilled_failures: int = Field(
        default=0, description="Of the failures, those the provider did not charge for "
        "(an error before any generation: recorded with 0 tokens and 0 cost)")
    refusals: int = Field(
        default=0, description="Answers refused or blocked by the provider "
        "(finish_reason refusal or content_filter), with or without text")
    latency_p50_ms: float | None = Field(
        default=None, description="Median latency of the successful requests (nearest rank); "
        "null when there is none")
    latency_p95_ms: float | None = Field(
        default=None, description="95th percentile latency of the successful requests")


class UsageSummary(BaseModel):
    """GET /usage/summary's body."""

    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    group_by: GroupBy
    groups: list[SummaryGroup]
    totals: SummaryGroup

    model_config = {
        "json_schema_extra": {
            "examples": [{
                "from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z", "group_by": "model",
                "groups": [{
                    "key": "gpt-4o", "label": "gpt-4o", "requests": 120, "failures": 2,
                    "input_tokens": 48000, "output_tokens": 21000, "cost_usd": 0.33,
                    "unpriced_requests": 0, "unbilled_failures": 1, "refusals": 0,
                    "latency_p50_ms": 812.0, "latency_p95_ms": 2350.5,
                }],
                "totals": {
                    "key": None, "label": None, "requests": 120, "failures": 2,
                    "input_tokens": 48000, "output_tokens": 21000, "cost_usd": 0.33,
                    "unpriced_requests": 0, "unbilled_failures": 1, "refusals": 0,
                    "latency_p50_ms": 812.0, "latency_p95_ms": 2350.5,
                },
            }]
        }
    }


def usage_query(
    start: Annotated[DateTimeText | None, Query(
        alias="from", description="Start (inclusive), ISO 8601 date or date-time; no zone "
        "means UTC. Must be before `to` (else 422). Default: 30 days before `to`")] = None,
    end: Annotated[DateTimeText | None, Query(
        alias="to", description="End (exclusive), ISO 8601 date or date-time; no zone means UTC. "
        "Must be after `from` (else 422). Default: now")] = None,
    specialist_id: Annotated[str | None, Query(max_length=100)] = None,
    user_email_hash: Annotated[str | None, Query(max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    provider: Annotated[str | None, Query(max_length=50)] = None,
) -> UsageQuery:
    """The time range and filters shared by both reports."""
    end_at = as_utc(end) if end else datetime.now(UTC)
    start_at = as_utc(start) if start else max(end_at, _EARLIEST + DEFAULT_RANGE) - DEFAULT_RANGE
    if start_at >= end_at:
        raise InvalidRequest("`from` must be before `to`")
    return UsageQuery(
        start=start_at, end=end_at, specialist_id=specialist_id,
        user_email_hash=user_email_hash, model=model, provider=provider,
    )


UsageQueryDep = Annotated[UsageQuery, Depends(usage_query)]


@router.get("/summary", response_model=UsageSummary, responses=_ERRORS)
async def summary(
    services: ServicesDep, query: UsageQueryDep, group_by: GroupBy = "day"
) -> UsageSummary:
    """Requests, failures, tokens and cost per day, user hash, specialist, model, provider or
    cost centre."""
    rows, overall = await summarize(services.engine, query, group_by)
    return UsageSummary(
        start=query.start, end=query.end, group_by=group_by,
        groups=[_group(r) for r in rows], totals=_group(overall),
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "One CSV row per record"},
               **_ERRORS},
)
async def export(services: ServicesDep, query: UsageQueryDep) -> StreamingResponse:
    """Every usage row in the range as CSV (header first, oldest first), streamed."""
    name = f"usage-{query.start:%Y%m%dT%H%M%SZ}-{query.end:%Y%m%dT%H%M%SZ}.csv"
    return StreamingResponse(
        export_csv(services.engine, query),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/status", responses=_AUTH_ERRORS)
async def status(services: ServicesDep) -> dict[str, object]:
    """The writer's state: database reachable, queue depth, spool size, totals since start."""
    return asdict(services.recorder.status())


def as_utc(value: datetime) -> datetime:
    """A range bound in UTC (no zone means UTC; beyond datetime's years, the ends of time)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # An offset within hours of year 1 or 9999 names an instant datetime cannot hold:
        # as a range bound it means the beginning (or the end) of time.
        return _EARLIEST if value.year == 1 else _LATEST


def _group(row: SummaryRow) -> SummaryGroup:
    return SummaryGroup(**asdict(row))
