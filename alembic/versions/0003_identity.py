"""Identity: usage_log gains cost_center and auth_method; the api_keys table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the two usage columns (nullable: old rows have neither) and create api_keys."""
    with op.batch_alter_table("usage_log") as batch:
        batch.add_column(sa.Column("cost_center", sa.String(200), nullable=True))
        batch.add_column(sa.Column("auth_method", sa.String(16), nullable=True))
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner_hash", sa.String(64), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.Column("cost_center", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_owner_hash", "api_keys", ["owner_hash"])


def downgrade() -> None:
    """Drop api_keys and the two usage columns."""
    op.drop_table("api_keys")
    with op.batch_alter_table("usage_log") as batch:
        batch.drop_column("auth_method")
        batch.drop_column("cost_center")
