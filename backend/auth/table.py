"""The `api_keys` table: personal API keys, stored only as a keyed hash.

Declared on the usage table's metadata, so one schema (and one migration chain) holds both.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, String, Table, Text

from backend.usage.table import metadata

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    # What a user (or a secret scanner) sees of the key: never enough to use it.
    Column("prefix", String(16), nullable=False),
    # HMAC-SHA256 of the whole key, keyed from USER_HASH_SECRET: the key itself is never stored.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    # The owner's keyed hash (the same as usage rows'), and what they had when they minted it.
    Column("owner_hash", String(64), nullable=False),
    Column("groups", Text, nullable=False),  # a JSON list
    Column("cost_center", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index("ix_api_keys_owner_hash", "owner_hash"),
)
