"""The usage table: the seed's UsageLog columns, plus what reconciliation needs.

The schema is created and changed only by the Alembic migrations in `alembic/versions`;
this definition is what the code reads and writes, and a test checks the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)

# Explicit names, so a constraint is called the same on SQLite and PostgreSQL and a
# later migration can name what it drops.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

usage_log = Table(
    "usage_log",
    metadata,
    # The seed's columns, as named.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    Column("user_email_hash", String(64), nullable=True),
    Column("specialist_id", String(100), nullable=False),
    Column("specialist_name", String(200), nullable=False),
    Column("provider", String(50), nullable=False),
    Column("model", String(200), nullable=False),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("estimated_cost_usd", Float, nullable=True),  # NULL: price unknown, never 0
    Column("latency_ms", Float, nullable=False),
    Column("success", Boolean, nullable=False),
    # Reconciliation: one row per request id, and what produced it.
    Column("request_id", String(64), nullable=False),
    Column("streamed", Boolean, nullable=False),
    Column("error_kind", String(64), nullable=True),
    Column("cached_input_tokens", Integer, nullable=True),
    Column("tokens_estimated", Boolean, nullable=False),
    Column("specialist_version", Integer, nullable=True),
    Column("prompt_hash", String(64), nullable=True),
    Column("rate_limit_key_kind", String(16), nullable=True),
    # Migration 0002. How the answer ended, normalised (stop, length, content_filter,
    # refusal, tool_calls, error); NULL when no answer ended (a failure before it, or a
    # row from before this column). `billed` is false for a failed call the provider did
    # not charge for (an error status before any generation): tokens and cost are then 0.
    Column("finish_reason", String(16), nullable=True),
    Column("billed", Boolean, nullable=False, server_default=true()),
    # Who asked, as proved (migration 0003): the cost centre claim and how it was proved.
    Column("cost_center", String(200), nullable=True),
    Column("auth_method", String(16), nullable=True),
    # The PII guard (migration 0004): what it did, and counts per kind as JSON.
    Column("pii_action", String(16), nullable=True),
    Column("pii_counts", String(255), nullable=True),
    # The caller's groups as a sorted JSON list (migration 0005): group budgets are rebuilt
    # from these rows.
    Column("user_groups", Text, nullable=True),
    # A governance trial of a proposed version (migration 0006), not a user's chat.
    Column("trial", Boolean, nullable=False, server_default=false()),
    # The writer's idempotency: INSERT ... ON CONFLICT (request_id) DO NOTHING.
    UniqueConstraint("request_id"),
    # Every report and the export select a time range first.
    Index("ix_usage_log_timestamp", "timestamp"),
    # Reports narrowed to one user, specialist or model over a range.
    Index("ix_usage_log_user_time", "user_email_hash", "timestamp"),
    Index("ix_usage_log_specialist_time", "specialist_id", "timestamp"),
    Index("ix_usage_log_model_time", "model", "timestamp"),
)

# Column names in table order: the CSV export's header and the spool's field set.
COLUMNS: tuple[str, ...] = tuple(column.name for column in usage_log.columns)
