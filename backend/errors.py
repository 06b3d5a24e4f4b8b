"""The root of the service's error tree; only `api/errors.py` turns these into HTTP."""

from __future__ import annotations

from backend.observability.safe_text import one_line


class PortalError(Exception):
    """Base of every error the service raises on purpose.

    `code` is the stable machine-readable name clients see; `message` is safe to show
    (never a key, a raw upstream body or a stack trace) and always one line: upstream text
    in it has its control characters escaped, so it cannot forge a log line.
    """

    code = "internal_error"

    def __init__(self, message: str) -> None:
        message = one_line(message)
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, object]:
        """The JSON error body clients see (HTTP error responses and SSE error events)."""
        return {"error": self.code, "message": self.message}


class InvalidRequest(PortalError):
    """The request is well-formed JSON but breaks a rule (roles, limits)."""

    code = "invalid_request"


class RequestTooLarge(InvalidRequest):
    """A message, the history or the whole conversation is over its configured limit."""

    code = "request_too_large"


class BodyTooLarge(RequestTooLarge):
    """A request body or WebSocket message is over MAX_REQUEST_BYTES (checked before it is
    held: a declared length at once, a chunked body as it arrives)."""


class BodyReadTimeout(InvalidRequest):
    """The request body did not arrive in full within BODY_READ_TIMEOUT_SECONDS."""

    code = "body_read_timeout"


class UnsupportedMediaType(InvalidRequest):
    """A chat request whose Content-Type is not JSON (refused before any token is taken, so
    a cross-site `text/plain` form cannot drain a user's limit)."""

    code = "unsupported_media_type"
