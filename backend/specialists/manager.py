"""Loads and validates the specialists file, and looks specialists up by id."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import yaml
from pydantic import ValidationError

from backend.errors import PortalError
from backend.specialists.types import Route, Specialist


class SpecialistNotFound(PortalError):
    """No enabled specialist has this id."""

    code = "specialist_not_found"


class SpecialistsFileError(ValueError):
    """The specialists file is missing or invalid; raised at start-up with the file's path."""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One consistent set of specialists and their resolved fallbacks; never changed."""

    by_id: dict[str, Specialist]
    fallbacks: dict[str, tuple[Route, ...]]


def _snapshot(specialists: Iterable[Specialist]) -> _Snapshot:
    by_id: dict[str, Specialist] = {}
    for specialist in specialists:
        key = str(specialist.id)
        if key in by_id:
            raise SpecialistsFileError(f"duplicate specialist id {key}")
        by_id[key] = specialist
    # Resolved once, so a missing reference or a cycle stops start-up (or a swap), not a request.
    return _Snapshot(by_id, {key: _fallback_routes(s, by_id) for key, s in by_id.items()})


class SpecialistManager:
    """The specialists requests see: an immutable snapshot, swapped whole when they change.

    Readers take `self._snapshot` once per call, so a swap (one attribute assignment) is
    atomic for them, and a request keeps the `Specialist` it looked up: one in flight
    finishes on the version it started with.
    """

    def __init__(self, specialists: Iterable[Specialist]) -> None:
        self._snapshot = _snapshot(specialists)
        self._listeners: list[Callable[[], None]] = []

    def replace(self, specialists: Iterable[Specialist]) -> None:
        """Serve this set from now on (validated first: a bad set raises and changes nothing)."""
        self._snapshot = _snapshot(specialists)
        for listener in self._listeners:
            listener()

    def on_replace(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every swap (what derives state from the set: metric labels)."""
        self._listeners.append(listener)

    def with_candidate(self, candidate: Specialist) -> SpecialistManager:
        """A copy in which `candidate` replaces (or joins) its id: to validate or try it."""
        others = [s for key, s in self._snapshot.by_id.items() if key != str(candidate.id)]
        return SpecialistManager([*others, candidate])

    def all(self) -> list[Specialist]:
        """Every specialist of the snapshot, enabled or not."""
        return list(self._snapshot.by_id.values())

    @classmethod
    def from_file(cls, path: Path) -> SpecialistManager:
        """Read a YAML file whose top level is `specialists: [...]`."""
        return cls(read_file(path))

    def get(self, specialist_id: str) -> Specialist:
        """The enabled specialist with this id; `SpecialistNotFound` otherwise."""
        by_id = self._snapshot.by_id
        # The canonical spelling first: what front ends send, without parsing a UUID.
        specialist = by_id.get(specialist_id) or by_id.get(_normalise(specialist_id))
        if specialist is None or not specialist.enabled:
            raise SpecialistNotFound(f"no enabled specialist with id {specialist_id!r}")
        return specialist

    def fallbacks(self, specialist: Specialist) -> tuple[Route, ...]:
        """The routes to try, in order, once this specialist's own has failed."""
        return self._snapshot.fallbacks.get(str(specialist.id), ())

    def enabled(self) -> list[Specialist]:
        """Every enabled specialist, in file order."""
        return [s for s in self._snapshot.by_id.values() if s.enabled]


def read_file(path: Path) -> list[Specialist]:
    """The specialists of a YAML file whose top level is `specialists: [...]`, validated."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecialistsFileError(f"cannot read SPECIALISTS_FILE {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise SpecialistsFileError(f"SPECIALISTS_FILE {path} is not valid YAML: {exc}") from exc
    items = raw.get("specialists") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise SpecialistsFileError(
            f"SPECIALISTS_FILE {path} needs a top-level 'specialists' list"
        )
    specialists = []
    for index, item in enumerate(items):
        try:
            specialists.append(Specialist.model_validate(item))
        except ValidationError as exc:
            raise SpecialistsFileError(
                f"SPECIALISTS_FILE {path}: specialist #{index + 1} is invalid: {exc}"
            ) from exc
    return specialists


def _fallback_routes(start: Specialist, by_id: dict[str, Specialist]) -> tuple[Route, ...]:
    """Expand `fallbacks` depth-first (a specialist brings its own fallbacks along).

    A referenced specialist may be disabled: a backup that users cannot pick directly.
    Routes equal to an earlier one, or to the specialist's own, are tried only once.
    """
    routes: list[Route] = []

    def visit(specialist: Specialist, path: tuple[str, ...]) -> None:
        for fallback in specialist.fallbacks:
            if fallback.specialist is None:
                routes.append(fallback.route(specialist))
                continue
            key = str(fallback.specialist)
            if key in path:
                raise SpecialistsFileError(f"fallback cycle: {' -> '.join((*path, key))}")
            other = by_id.get(key)
            if other is None:
                raise SpecialistsFileError(
                    f"specialist {path[-1]} names fallback specialist {key}, which does not exist"
                )
            routes.append(other.route)
            visit(other, (*path, key))

    visit(start, (str(start.id),))
    own = start.route
    return tuple(dict.fromkeys(route for route in routes if route != own))


def _normalise(specialist_id: str) -> str:
    # Accept any UUID spelling (upper case, no hyphens); unknown shapes simply miss.
    try:
        return str(UUID(specialist_id))
    except (ValueError, AttributeError, TypeError):
        return specialist_id
