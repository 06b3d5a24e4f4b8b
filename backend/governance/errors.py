"""The governance errors; `api/errors.py` gives each its status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.errors import InvalidRequest, PortalError


class InvalidVersion(InvalidRequest):
    """A proposed version breaks a rule (a field, a fallback, a classification ceiling)."""

    code = "invalid_specialist"

    def __init__(self, message: str, detail: Sequence[dict[str, Any]]) -> None:
        super().__init__(message)
        self.detail = list(detail)

    def body(self) -> dict[str, object]:
        """The error with the fields at fault, like FastAPI's own 422s."""
        return {**super().body(), "detail": self.detail}


class VersionNotFound(PortalError):
    """The specialist has no version with this number."""

    code = "version_not_found"


class GovernedSpecialistNotFound(PortalError):
    """No specialist (enabled or not) has this id in the database."""

    code = "specialist_not_found"


class VersionConflict(PortalError):
    """The action does not fit the version's state (approving a rejected one, say)."""

    code = "version_conflict"


class SelfApproval(PortalError):
    """SPECIALIST_APPROVAL=required and the approver is the proposal's author."""

    code = "self_approval"


class SpecialistsReadOnly(PortalError):
    """SPECIALISTS_SOURCE=file: specialists come from the file and cannot be changed here."""

    code = "specialists_read_only"
