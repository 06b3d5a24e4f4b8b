"""The governance tables: specialists, their immutable versions, the audit chain, counters.

Declared on the usage table's metadata, so one schema (and one migration chain) holds all.
Created by migration 0006; a test checks the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from backend.usage.table import metadata

specialists = Table(
    "specialists",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    # The version serving now; NULL until a first version is approved.
    Column("live_version", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

specialist_versions = Table(
    "specialist_versions",
    metadata,
    Column("specialist_id", String(36), nullable=False),
    Column("version", Integer, nullable=False),
    # Every field of the version (name, prompt, provider, ...) as canonical JSON: never updated.
    Column("content", Text, nullable=False),
    Column("prompt_hash", String(64), nullable=False),
    Column("content_hash", String(64), nullable=False),
    # The author's keyed user hash (as in usage rows), or `admin_token` / `import`.
    Column("author", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # proposed -> live -> superseded, or proposed -> rejected; only the state moves.
    Column("state", String(16), nullable=False),
    Column("decided_by", String(64), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("decision_comment", Text, nullable=True),
    Column("live_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("specialist_id", "version"),
    # Exactly one live version per specialist, kept by the database itself.
    Index(
        "ix_specialist_versions_one_live", "specialist_id", unique=True,
        sqlite_where=text("state = 'live'"), postgresql_where=text("state = 'live'"),
    ),
)

# Counters bumped inside the transaction of every change: the row lock serialises writers,
# and workers poll `specialists` to learn cheaply that a reload is due.
governance_state = Table(
    "governance_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("actor_method", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=False),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_target", "target", "seq"),
)
