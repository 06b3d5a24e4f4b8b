"""GET /admin/audit and /admin/audit/export: the audit chain, filtered and paged (admins)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import StreamingResponse

from backend.api.deps import ServicesDep, require_admin
from backend.governance.audit import COLUMNS, AuditQuery, page, rows_in_order
from backend.routes.usage import DateTimeText
from backend.usage.reports import neutralise

router = APIRouter(prefix="/admin/audit", tags=["admin"], dependencies=[Depends(require_admin)])


def audit_query(
    actor: Annotated[str | None, Query(max_length=64, description="A user hash, "
                                       "`admin_token` or `import`")] = None,
    action: Annotated[str | None, Query(max_length=64, description="specialist.approve")] = None,
    target: Annotated[str | None, Query(max_length=200, description="specialist/<id>")] = None,
    start: Annotated[DateTimeText | None, Query(alias="from", description="ISO 8601")] = None,
    end: Annotated[DateTimeText | None, Query(
        alias="to", description="ISO 8601, exclusive")] = None,
) -> AuditQuery:
    """The filters of both endpoints (a time without a zone is UTC)."""
    def utc(stamp: datetime | None) -> datetime | None:
        return stamp.replace(tzinfo=UTC) if stamp and stamp.tzinfo is None else stamp

    return AuditQuery(actor=actor, action=action, target=target, start=utc(start), end=utc(end))


AuditQueryDep = Annotated[AuditQuery, Depends(audit_query)]


@router.get("")
async def list_audit(
    services: ServicesDep, query: AuditQueryDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Entries newest first, `limit` at a time from `offset`, with the total that match."""
    entries, total = await page(services.engine, query, limit=limit, offset=offset)
    return {"entries": entries, "total": total, "limit": limit, "offset": offset}


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return stamp.astimezone(UTC).isoformat()
    return neutralise(value) if isinstance(value, str) else str(value)


def _line(cells: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue().encode()


@router.get("/export", response_class=StreamingResponse, responses={
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV"},
})
async def export_audit(services: ServicesDep, query: AuditQueryDep) -> StreamingResponse:
    """Every matching entry, oldest first, as CSV (the chain's columns, hashes included)."""

    async def lines() -> AsyncIterator[bytes]:
        yield _line(list(COLUMNS))
        async for row in rows_in_order(services.engine, query):
            yield _line([_cell(row._mapping[name]) for name in COLUMNS])

    return StreamingResponse(
        lines(), media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )
