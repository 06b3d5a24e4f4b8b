"""The governance errors; `api/errors.py` gives each its status."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from backend.errors import InvalidRequest, PortalError

P = ParamSpec("P")
T = TypeVar("T")


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


class GovernanceUnavailable(PortalError):
    """The database holding specialists and the audit chain cannot be reached right now."""

    code = "governance_unavailable"


@contextmanager
def database_errors() -> Iterator[None]:
    """Database failures as domain errors: a lost race is a conflict, an outage a 503."""
    try:
        yield
    except IntegrityError as exc:  # e.g. two creates of one id, two versions numbered alike
        raise VersionConflict("a concurrent change got there first; read and try again") from exc
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        raise GovernanceUnavailable(
            f"the database is unavailable ({type(exc).__name__}); try again shortly"
        ) from exc


def guarded(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """An async function whose database failures come out as `database_errors` says."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with database_errors():
            return await func(*args, **kwargs)

    return wrapper
