"""The usage table: the seed's UsageLog columns, plus what reconciliation needs."""

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
)

metadata = MetaData()

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
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("estimated_cost_usd", Float, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("success", Boolean, nullable=False),
    # Reconciliation: one row per request id, and what produced it.
    Column("request_id", String(64), nullable=False, unique=True),
    Column("streamed", Boolean, nullable=False, default=False),
    Column("error_kind", String(64), nullable=True),
    Column("cached_input_tokens", Integer, nullable=True),
    Column("tokens_estimated", Boolean, nullable=False, default=False),
    Column("specialist_version", Integer, nullable=True),
    Column("prompt_hash", String(64), nullable=True),
    Column("rate_limit_key_kind", String(16), nullable=True),
    Index("ix_usage_log_timestamp", "timestamp"),
    Index("ix_usage_log_user_time", "user_email_hash", "timestamp"),
    Index("ix_usage_log_specialist_time", "specialist_id", "timestamp"),
    Index("ix_usage_log_model_time", "model", "timestamp"),
)
