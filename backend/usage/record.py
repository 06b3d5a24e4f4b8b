"""One interaction's usage record, as the chat service hands it to the recorder."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
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
