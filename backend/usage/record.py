"""One interaction's usage record, as the chat service hands it to the recorder."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


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

    def row(self) -> dict[str, Any]:
        """The record as a column-name mapping for an INSERT."""
        return asdict(self)
