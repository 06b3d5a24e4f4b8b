"""/openapi.json with the configured request limits written into the schemas they bound.

The character and message limits are settings, so the class-level schemas cannot carry
them; without them the document would allow what the server answers with a 413.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from backend.config.settings import Settings


def document_limits(app: FastAPI, settings: Settings) -> None:
    """Make the app's OpenAPI document state MAX_MESSAGE_CHARS, MAX_HISTORY_MESSAGES and
    MAX_TOTAL_CHARS on the /chat request body."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _with_limits(generate(), settings)  # generate() caches it on the app
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _with_limits(document: dict[str, Any], settings: Settings) -> None:
    schemas = document.get("components", {}).get("schemas", {})
    request, history = schemas.get("ChatRequest"), schemas.get("HistoryMessage")
    if request is None or history is None:
        return
    fields = request["properties"]
    fields["message"]["maxLength"] = settings.max_message_chars
    fields["conversation_history"]["maxItems"] = settings.max_history_messages
    history["properties"]["content"]["maxLength"] = settings.max_message_chars
    request["description"] = (
        f"{request.get('description', '')} Over any limit (MAX_MESSAGE_CHARS per message, "
        f"MAX_HISTORY_MESSAGES, and {settings.max_total_chars} characters in all: "
        "MAX_TOTAL_CHARS) the answer is a 413."
    ).strip()


def error_responses(described: dict[int, str]) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` for error statuses: the portal's JSON error body, described."""
    from backend.chat.schemas import ErrorBody

    return {status: {"model": ErrorBody, "description": text} for status, text in described.items()}
