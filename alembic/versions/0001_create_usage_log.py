"""Create usage_log: the seed's UsageLog columns plus the reconciliation columns.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the table, its request-id unique constraint and the report indexes."""
    op.create_table(
        "usage_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_email_hash", sa.String(64), nullable=True),
        sa.Column("specialist_id", sa.String(100), nullable=False),
        sa.Column("specialist_name", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(50), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("estimated_cost_usd", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("streamed", sa.Boolean(), nullable=False),
        sa.Column("error_kind", sa.String(64), nullable=True),
        sa.Column("cached_input_tokens", sa.Integer(), nullable=True),
        sa.Column("tokens_estimated", sa.Boolean(), nullable=False),
        sa.Column("specialist_version", sa.Integer(), nullable=True),
        sa.Column("prompt_hash", sa.String(64), nullable=True),
        sa.Column("rate_limit_key_kind", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_usage_log"),
        sa.UniqueConstraint("request_id", name="uq_usage_log_request_id"),
    )
    op.create_index("ix_usage_log_timestamp", "usage_log", ["timestamp"])
    op.create_index("ix_usage_log_user_time", "usage_log", ["user_email_hash", "timestamp"])
    op.create_index("ix_usage_log_specialist_time", "usage_log", ["specialist_id", "timestamp"])
    op.create_index("ix_usage_log_model_time", "usage_log", ["model", "timestamp"])


def downgrade() -> None:
    """Drop the table (and with it every usage record: only for a fresh database)."""
    op.drop_table("usage_log")
