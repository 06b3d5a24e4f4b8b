"""The browser sign-in tables: sessions, and logins in flight; neither holds a token in clear.

A session row is keyed by the SHA-256 of the random id in the browser's cookie (the id
itself is never stored), and its tokens are sealed (`auth/sealing.py`) to that key. A login
in flight is keyed by the hash of its `state`, and taken (deleted) exactly once.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, LargeBinary, String, Table

from backend.usage.table import metadata

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The absolute end (SESSION_LIFETIME_SECONDS after sign-in), whatever refreshes happen.
    Column("expires_at", DateTime(timezone=True), nullable=False),
    # When the access token expires: a refresh is due a margin before.
    Column("tokens_expire_at", DateTime(timezone=True), nullable=False),
    # While set and in the future, one worker is refreshing: the others wait or use the
    # tokens they have, so a rotating refresh token is spent once.
    Column("refresh_lease_until", DateTime(timezone=True), nullable=True),
    # AES-GCM of {"tokens": ..., "claims": ...}, bound to id_hash.
    Column("sealed", LargeBinary, nullable=False),
    Index("ix_web_sessions_expires_at", "expires_at"),
)

web_logins = Table(
    "web_logins",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    # AES-GCM of {"nonce", "verifier", "return_to"}, bound to state_hash.
    Column("sealed", LargeBinary, nullable=False),
)
