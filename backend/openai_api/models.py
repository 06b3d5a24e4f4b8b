"""Which specialist a `model` names: its id, or an alias from MODEL_ALIASES; and the list."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

from backend.specialists.manager import SpecialistManager, SpecialistNotFound
from backend.specialists.types import Specialist

OWNER = "ai-portal"


class ModelNotFound(SpecialistNotFound):
    """No alias or enabled specialist answers to this `model` name."""

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.")


class AliasError(ValueError):
    """MODEL_ALIASES names no enabled specialist; start-up stops rather than serve 404s."""


def resolve(
    model: str, aliases: Mapping[str, UUID], specialists: SpecialistManager
) -> Specialist:
    """The enabled specialist behind an alias or a specialist id; `ModelNotFound` otherwise."""
    target = aliases.get(model)
    try:
        return specialists.get(str(target) if target is not None else model)
    except SpecialistNotFound as exc:
        raise ModelNotFound(model) from exc


def check_aliases(aliases: Mapping[str, UUID], specialists: SpecialistManager) -> None:
    """Refuse aliases of no enabled specialist: a typo would otherwise only show as 404s."""
    enabled = {str(s.id) for s in specialists.enabled()}
    for alias, target in aliases.items():
        if str(target) not in enabled:
            raise AliasError(
                f"MODEL_ALIASES: alias {alias!r} names {target}, which is not an enabled "
                "specialist in SPECIALISTS_FILE"
            )


def model_list(
    aliases: Mapping[str, UUID], specialists: SpecialistManager,
    visible: Callable[[Specialist], bool] = lambda _: True,
) -> dict[str, Any]:
    """`GET /v1/models`: every enabled (and `visible`) specialist by id, then their aliases."""
    enabled = {str(s.id): s for s in specialists.enabled() if visible(s)}
    entries = [model_object(key, s) for key, s in enabled.items()]
    entries += [
        model_object(alias, enabled[str(target)])
        for alias, target in aliases.items()
        if str(target) in enabled
    ]
    return {"object": "list", "data": entries}


def model_object(name: str, specialist: Specialist) -> dict[str, Any]:
    """One entry of the list, OpenAI's fields plus the specialist it stands for."""
    return {
        "id": name,
        "object": "model",
        # Specialists carry no creation date; 0 says "unknown" rather than inventing one.
        "created": 0,
        "owned_by": OWNER,
        "specialist_id": str(specialist.id),
        "name": specialist.name,
    }
