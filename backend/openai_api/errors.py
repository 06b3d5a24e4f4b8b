"""OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, for /v1 paths.

`api/errors.py` still decides every status; this module only re-shapes the portal's error
body, and moves the two statuses the OpenAI API never uses for a bad request (413, 422)
to its 400, so an OpenAI SDK raises `BadRequestError` as it would against OpenAI itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.errors import InvalidRequest

PREFIX = "/v1"

# Portal codes whose OpenAI spelling clients (and the SDKs' docs) know.
_CODES = {
    "specialist_not_found": "model_not_found",
    "rate_limited": "rate_limit_exceeded",
    "http_404": "unknown_url",
    "http_405": "method_not_allowed",
}
_PARAMS = {"model_not_found": "model"}


class InvalidParameter(InvalidRequest):
    """A /v1 request the portal cannot serve as asked; `param` names the field at fault."""

    def __init__(self, message: str, *, param: str, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.code = code

    def body(self) -> dict[str, object]:
        """The error body, with the field at fault."""
        return {**super().body(), "param": self.param}


def is_openai_path(path: str) -> bool:
    """Whether a request path belongs to the OpenAI-compatible API."""
    return path == PREFIX or path.startswith(PREFIX + "/")


_BUDGET_FIELDS = (
    "scope", "name", "limit_usd", "spent_usd", "reserved_usd", "requested_usd", "resets_at"
)


def openai_error(
    status: int, body: dict[str, Any], *, method: str, path: str
) -> tuple[int, dict[str, Any]]:
    """The portal's (status, error body) as the OpenAI API would answer it."""
    code = str(body.get("error") or "internal_error")
    message = str(body.get("message") or "")
    param = body.get("param")
    detail = body.get("detail")
    if detail:
        message, param = _validation_message(detail)
    if code == "http_404":
        message = f"Invalid URL ({method} {path})"
    if status in (413, 422):
        status = 400
    code = _CODES.get(code, code)
    error: dict[str, Any] = {
        "message": message,
        "type": error_type(status),
        "param": param if param is not None else _PARAMS.get(code),
        "code": code,
    }
    if body.get("provider"):
        error["provider"] = body["provider"]
    if "limit_usd" in body:  # a budget refusal: which budget, and when it resets
        error.update({k: body[k] for k in _BUDGET_FIELDS if k in body})
    return status, {"error": error}


def error_type(status: int) -> str:
    """OpenAI's `type` for a status: what its own API sends for that class of failure."""
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _validation_message(detail: Sequence[dict[str, Any]]) -> tuple[str, str | None]:
    # The first problem is enough for a client to fix its request; it never echoes input.
    first = detail[0]
    if first.get("type") == "json_invalid":
        return "We could not parse the JSON body of your request.", None
    param = dotted(first.get("loc", ()))
    if not param:
        return str(first.get("msg", "invalid request body")), None
    return f"{first.get('msg', 'invalid value')}: '{param}'", param


def dotted(loc: Sequence[object]) -> str:
    """A pydantic location as OpenAI spells a parameter: `messages[1].content`."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
