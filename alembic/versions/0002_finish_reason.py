"""usage_log.finish_reason and usage_log.billed: how each answer ended, and unbilled failures.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add both columns; rows written before them keep NULL and `billed` true.

    Plain ADD COLUMN on both dialects (SQLite allows it with a constant default, and
    PostgreSQL 11+ adds a column with a constant default without rewriting the table).
    """
    op.add_column("usage_log", sa.Column("finish_reason", sa.String(16), nullable=True))
    op.add_column(
        "usage_log",
        sa.Column("billed", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    """Drop both columns (batch mode, so SQLite rebuilds the table)."""
    with op.batch_alter_table("usage_log") as batch:
        batch.drop_column("billed")
        batch.drop_column("finish_reason")
