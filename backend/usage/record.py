"""One interaction's usage record, as the chat service hands it to the recorder."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import String

from backend.usage.table import usage_log

# A string longer than its column (PostgreSQL refuses it, SQLite would keep it) is cut to
# fit and ends in this marker, so a billable row is never refused for an upstream's model
# name; columns too short for it end in the ellipsis alone.
TRUNCATED = "…[truncated]"
SHORT_TRUNCATED = "…"
# PostgreSQL refuses a NUL in text (SQLSTATE 22021) whatever its length: it is replaced.
_NUL, _REPLACEMENT = "\x00", "\ufffd"


def bounded(text: str, limit: int) -> str:
    """`text` without NULs and at most `limit` characters, marked visibly when it was cut."""
    text = text.replace(_NUL, _REPLACEMENT)
    if len(text) <= limit:
        return text
    marker = TRUNCATED if limit >= 4 * len(TRUNCATED) else SHORT_TRUNCATED
    return text[: limit - len(marker)] + marker


# Not frozen, though never changed: built per request (see providers/base.py Usage).
@dataclass(slots=True)
class UsageRecord:
    """A row of `usage_log`, built once per request when the interaction ends."""

    request_id: str
    timestamp: datetime
    user_email_hash: str | None
    specialist_id: str
    specialist_name: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    estimated_cost_usd: float | None
    latency_ms: float
    success: bool
    streamed: bool
    error_kind: str | None = None
    cached_input_tokens: int | None = None
    tokens_estimated: bool = False
    specialist_version: int | None = None
    prompt_hash: str | None = None
    rate_limit_key_kind: str | None = None
    finish_reason: str | None = None
    billed: bool = True
    cost_center: str | None = None
    auth_method: str | None = None  # none | header | jwt | api_key | admin_token
    # The PII guard: "masked" or "blocked" (None: nothing found, or off), and how many
    # distinct values of each kind, as JSON (`{"card": 1, "iban": 2}`); never the values.
    pii_action: str | None = None
    pii_counts: str | None = None
    user_groups: str | None = None  # a sorted JSON list; what group budgets are rebuilt from
    trial: bool = False  # a governance trial of a proposed specialist version

    def __post_init__(self) -> None:
        # Every path to the table (a new record, a spool replay) builds one of these.
        for name, limit in STRING_LIMITS:
            value = getattr(self, name)
            if value is not None and (len(value) > limit or _NUL in value):
                object.__setattr__(self, name, bounded(value, limit))

    def row(self) -> dict[str, Any]:
        """The record as a column-name mapping for an INSERT."""
        # Not dataclasses.asdict: it deep-copies every value, and was most of a batch's cost.
        return {name: getattr(self, name) for name in FIELD_NAMES}

    def to_json(self) -> bytes:
        """One spool line (without the newline): the row, timestamp as RFC 3339."""
        return orjson.dumps(self.row())

    @classmethod
    def from_json(cls, line: bytes) -> UsageRecord:
        """Parse a spool line written by `to_json` (unknown keys, from a newer version, ignored)."""
        data = orjson.loads(line)
        values = {name: data[name] for name in FIELD_NAMES if name in data}
        stamp = datetime.fromisoformat(values["timestamp"])
        values["timestamp"] = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        return cls(**values)


# The record's fields, in order: each one is a column of `usage_log` of the same name.
FIELD_NAMES = tuple(f.name for f in fields(UsageRecord))
# Each string column's length, from the table definition (String(200) and so on).
STRING_LIMITS: tuple[tuple[str, int], ...] = tuple(
    (column.name, column.type.length)
    for column in usage_log.columns
    if isinstance(column.type, String) and column.type.length
)
