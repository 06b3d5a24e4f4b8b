"""The guard's refusals, in the service's error tree (statuses live in `api/errors.py`)."""

from __future__ import annotations

from collections.abc import Sequence

from backend.errors import InvalidRequest, PortalError
from backend.guard.kinds import PiiType


class PiiDetected(InvalidRequest):
    """The specialist's policy blocks the kinds of personal data the request holds.

    The body names the kinds found, never a value.
    """

    code = "pii_detected"

    def __init__(self, types: Sequence[PiiType]) -> None:
        self.types = list(types)
        super().__init__(
            f"the request contains {', '.join(self.types)}, which this specialist does "
            "not accept; remove them and send it again"
        )

    def body(self) -> dict[str, object]:
        """The error body, with the kinds found."""
        return {**super().body(), "types": self.types}


class GuardFailed(PortalError):
    """The PII guard itself failed: the request is refused, never sent unguarded."""

    code = "pii_guard_failed"
