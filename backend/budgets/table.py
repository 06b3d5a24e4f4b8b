"""The budget tables: limits set through the admin API, and the audit of every change.

Declared on the usage table's metadata, so one schema (and one migration chain) holds all.
A user's budget is kept under the user's keyed hash: no raw email reaches the database.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, PrimaryKeyConstraint, String, Table

from backend.usage.table import metadata

budget_limits = Table(
    "budget_limits",
    metadata,
    Column("scope", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("limit_usd", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(80), nullable=False),
    PrimaryKeyConstraint("scope", "name", name="pk_budget_limits"),
)

budget_audit = Table(
    "budget_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(80), nullable=False),  # "admin_token" or "user:<hash>"
    Column("action", String(8), nullable=False),  # set | delete
    Column("scope", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("old_usd", Float, nullable=True),
    Column("new_usd", Float, nullable=True),
    Index("ix_budget_audit_at", "at"),
)
