"""A version's content: what it holds, how it is validated, hashed and compared."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from backend.config.classification import DEFAULT_CEILING, Classification, allowed
from backend.governance.errors import InvalidVersion
from backend.specialists.manager import SpecialistManager, SpecialistsFileError
from backend.specialists.types import Specialist

log = logging.getLogger(__name__)

# Everything a version fixes; `id`, `enabled` and the number belong to the specialist row.
# Fields later issues add to `Specialist` (the PII policy) become version content as well.
CONTENT_FIELDS: tuple[str, ...] = tuple(
    name for name in Specialist.model_fields if name not in ("id", "enabled", "version")
)
STATES = ("proposed", "live", "superseded", "rejected")


def canonical(content: Mapping[str, Any]) -> str:
    """The stored form: JSON with sorted keys, so equal content is equal text."""
    return orjson.dumps(dict(content), option=orjson.OPT_SORT_KEYS).decode()


def content_hash(content: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical content: an unchanged import is recognised by it."""
    return hashlib.sha256(canonical(content).encode()).hexdigest()


def content_of(specialist: Specialist) -> dict[str, Any]:
    """A validated specialist's version content, defaults filled in."""
    return specialist.model_dump(mode="json", include=set(CONTENT_FIELDS))


def build(
    specialist_id: str, version: int, content: Mapping[str, Any], *, enabled: bool = True
) -> Specialist:
    """The `Specialist` a stored (already validated) version serves as."""
    return Specialist.model_validate(
        {**content, "id": specialist_id, "version": version, "enabled": enabled}
    )


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    # Where and which rule, never the input (it may be a whole system prompt).
    return [
        {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]


def validate(
    specialist_id: str, version: int, content: Mapping[str, Any], *,
    current: SpecialistManager, ceilings: Mapping[str, Classification], enabled: bool = True,
) -> Specialist:
    """The version as a `Specialist`, or `InvalidVersion` with the fields at fault.

    The same rules as the specialists file (known provider, model, parameters), then the
    set's (fallbacks that exist and make no cycle, with this version in place of the live
    one), then the classification ceilings of its provider and of every fallback's.
    """
    unknown = sorted(set(content) - set(CONTENT_FIELDS))
    if unknown:
        raise InvalidVersion("the version has unknown fields", [
            {"loc": ["body", name], "msg": "unknown field", "type": "extra_forbidden"}
            for name in unknown
        ])
    try:
        specialist = build(specialist_id, version, content, enabled=enabled)
    except ValidationError as exc:
        raise InvalidVersion("the version is not valid", _field_errors(exc)) from exc
    try:
        candidate = current.with_candidate(specialist)
    except SpecialistsFileError as exc:
        raise InvalidVersion(str(exc), [
            {"loc": ["body", "fallbacks"], "msg": str(exc), "type": "fallbacks"}
        ]) from exc
    _check_ceilings(specialist, candidate, ceilings)
    return specialist


def _check_ceilings(
    specialist: Specialist, candidate: SpecialistManager, ceilings: Mapping[str, Classification]
) -> None:
    level = specialist.classification
    problems: list[dict[str, Any]] = []
    routes = [("provider", specialist.route), *(
        ("fallbacks", route) for route in candidate.fallbacks(specialist)
    )]
    for field, route in routes:
        provider = route.target.provider
        ceiling = ceilings.get(provider, DEFAULT_CEILING)
        if not allowed(level, ceiling):
            problems.append({
                "loc": ["body", field], "type": "classification_ceiling",
                "msg": f"{level} data may not go to {provider} (cleared up to {ceiling}; "
                       "PROVIDER_CLASSIFICATION)",
            })
    if problems:
        raise InvalidVersion(
            f"classification {level} is above a provider's ceiling", _dedupe(problems)
        )


def _dedupe(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that differ, each as `{"from": old, "to": new}` (all of them for a first)."""
    old = before or {}
    return {
        name: {"from": old.get(name), "to": after.get(name)}
        for name in sorted(set(old) | set(after))
        if old.get(name) != after.get(name)
    }


def within_ceilings(
    specialists: Iterable[Specialist], ceilings: Mapping[str, Classification]
) -> list[Specialist]:
    """The set to serve: any specialist now above a ceiling (PROVIDER_CLASSIFICATION was
    tightened after it went live) is served disabled, so its data stops going there; it can
    still be another's fallback when that one's own classification allows the route."""
    items = list(specialists)
    current = SpecialistManager(items)
    result = []
    for specialist in items:
        try:
            _check_ceilings(specialist, current, ceilings)
        except InvalidVersion as exc:
            if specialist.enabled:
                log.error("specialist %s (version %d) not served: %s", specialist.id,
                          specialist.version, "; ".join(d["msg"] for d in exc.detail))
            specialist = Specialist.model_validate(
                {**specialist.model_dump(), "enabled": False}
            )
        result.append(specialist)
    return result
