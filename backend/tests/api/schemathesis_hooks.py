"""Schemathesis hooks for the run in test_schemathesis.py (loaded via SCHEMATHESIS_HOOKS).

Rules the server enforces cannot be written in OpenAPI's JSON Schema, so they live in
the schema's descriptions (and the 4xx the server answers), and these hooks teach the
generator the same rules, as schemathesis documents for such constraints:
- /usage/*: `from` must be before `to` (now, when `to` is absent);
- /v1/chat/completions: the conversation must end in a user message with text, and user
  and assistant messages need content;
- /admin/budgets/portal/{name}: the portal's one budget is named `portal`;
- POST /keys: `expires_at`, when given, must be in the future.
Only schema-valid (positive) cases are adjusted, and only in what breaks those rules;
every other generated request goes out exactly as generated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import schemathesis
from schemathesis import GenerationMode

_DROPPED_ROLES = ("system", "developer")


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _forward_range(query: dict[str, Any]) -> dict[str, Any]:
    start = _instant(query.get("from"))
    end = _instant(query["to"]) if "to" in query else datetime.now(UTC)
    if start is None or end is None:
        return query  # not a date-time: the server must refuse it, as generated
    try:
        backwards = start >= end
    except (OverflowError, TypeError):
        return query
    return {k: v for k, v in query.items() if k != "from"} if backwards else query


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return ""


def _servable_conversation(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    kept = [
        m for m in messages
        if isinstance(m, dict) and (m.get("role") in _DROPPED_ROLES or m.get("content") is not None)
    ]
    turns = [m for m in kept if m.get("role") not in _DROPPED_ROLES]
    if not turns or turns[-1].get("role") != "user" or not _text(turns[-1].get("content")):
        kept.append({"role": "user", "content": "Hi"})
    return {**body, "messages": kept}


def _future_expiry(body: dict[str, Any]) -> dict[str, Any]:
    expires = _instant(body.get("expires_at"))
    if expires is None:
        return body  # absent, or not a date-time: sent as generated
    try:
        past = expires <= datetime.now(UTC)
    except (OverflowError, TypeError):
        return body
    return {k: v for k, v in body.items() if k != "expires_at"} if past else body


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """Make a schema-valid case satisfy the rules the schema can only describe in words."""
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return case
    path = case.operation.path
    if path.startswith("/usage/") and isinstance(case.query, dict) and "from" in case.query:
        case.query = _forward_range(case.query)
    elif path == "/v1/chat/completions" and isinstance(case.body, dict):
        case.body = _servable_conversation(case.body)
    elif path == "/keys" and case.method.upper() == "POST" and isinstance(case.body, dict):
        case.body = _future_expiry(case.body)
    elif path == "/admin/budgets/{scope}/{name}" and isinstance(case.path_parameters, dict):
        if case.path_parameters.get("scope") == "portal":
            case.path_parameters = {**case.path_parameters, "name": "portal"}
    return case
