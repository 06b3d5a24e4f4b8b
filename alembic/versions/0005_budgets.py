"""Budgets: usage_log gains user_groups; the budget_limits and budget_audit tables.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add usage_log.user_groups (nullable: old rows have none) and the two budget tables."""
    with op.batch_alter_table("usage_log") as batch:
        batch.add_column(sa.Column("user_groups", sa.Text(), nullable=True))
    op.create_table(
        "budget_limits",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("limit_usd", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(80), nullable=False),
        sa.PrimaryKeyConstraint("scope", "name", name="pk_budget_limits"),
    )
    op.create_table(
        "budget_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("old_usd", sa.Float(), nullable=True),
        sa.Column("new_usd", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_budget_audit"),
    )
    op.create_index("ix_budget_audit_at", "budget_audit", ["at"])


def downgrade() -> None:
    """Drop the budget tables and usage_log.user_groups."""
    op.drop_table("budget_audit")
    op.drop_table("budget_limits")
    with op.batch_alter_table("usage_log") as batch:
        batch.drop_column("user_groups")
