"""Add the PII guard's columns: what it did to a request, and counts per kind.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
# Other migrations (0002, 0003) are written in parallel; the merge re-chains this one.
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Two nullable columns: existing rows say nothing about the guard (it did not exist)."""
    with op.batch_alter_table("usage_log") as batch:
        batch.add_column(sa.Column("pii_action", sa.String(16), nullable=True))
        batch.add_column(sa.Column("pii_counts", sa.String(255), nullable=True))


def downgrade() -> None:
    """Drop the two columns (and the counts they held)."""
    with op.batch_alter_table("usage_log") as batch:
        batch.drop_column("pii_counts")
        batch.drop_column("pii_action")
