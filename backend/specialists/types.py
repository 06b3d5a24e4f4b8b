"""The specialist: a named persona bound to one provider, model and parameters."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.config.classification import Classification
from backend.guard.policy import PiiPolicy
from backend.providers.factory import ProviderTarget, check_provider_name
from backend.ratelimit.policy import LimitOverride


@dataclass(frozen=True, slots=True)
class Route:
    """One way to answer a specialist's request: a provider target, a model, its parameters."""

    target: ProviderTarget
    model: str
    temperature: float | None = None
    max_output_tokens: int | None = None


class Fallback(BaseModel):
    """A `fallbacks` entry: another specialist, or a provider and model (docs/resilience.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specialist: UUID | None = None
    provider: str | None = None
    model: Annotated[str | None, Field(min_length=1)] = None
    # Only for provider `openai_compatible`, as on a specialist.
    base_url: str | None = None
    api_key_env: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Fallback:
        if self.specialist is not None:
            if self.provider or self.model or self.base_url or self.api_key_env:
                raise ValueError("a fallback names a specialist or a provider and model, not both")
        elif self.provider is None or self.model is None:
            raise ValueError("a fallback needs `specialist`, or `provider` and `model`")
        else:
            check_provider_name(self.provider)
        return self

    def route(self, owner: Specialist) -> Route:
        """A provider fallback's route; it keeps its owner's temperature and token limit."""
        assert self.provider is not None and self.model is not None
        target = ProviderTarget(self.provider, self.base_url, self.api_key_env)
        return Route(target, self.model, owner.temperature, owner.max_output_tokens)


class Specialist(BaseModel):
    """One entry of the specialists file, validated at start-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""
    provider: str
    model: Annotated[str, Field(min_length=1)]
    system_prompt: str = ""
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    max_output_tokens: Annotated[int | None, Field(gt=0)] = None
    enabled: bool = True
    version: Annotated[int, Field(ge=1)] = 1
    # Only for provider `openai_compatible`: its own server and the variable with its key.
    base_url: str | None = None
    api_key_env: str | None = None
    # Its own per-client limit, on top of the general ones (docs/rate-limits.md).
    rate_limit: LimitOverride | None = None
    # Tried in order when this specialist's provider keeps failing (docs/resilience.md).
    fallbacks: tuple[Fallback, ...] = ()
    # Groups whose members may use it (empty: every signed-in user); docs/auth.md.
    allowed_groups: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    # What the PII guard does to this specialist's requests; unset: PII_DEFAULT_MODE/TYPES.
    pii: PiiPolicy | None = None
    # What data it handles; PROVIDER_CLASSIFICATION says which providers may see it.
    classification: Classification = "internal"

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        check_provider_name(value)
        return value

    @cached_property
    def target(self) -> ProviderTarget:
        """What the provider factory needs to hand out this specialist's provider."""
        return ProviderTarget(self.provider, self.base_url, self.api_key_env)

    @cached_property
    def route(self) -> Route:
        """This specialist's own provider target, model and parameters."""
        return Route(self.target, self.model, self.temperature, self.max_output_tokens)

    @cached_property
    def prompt_hash(self) -> str:
        """SHA-256 of the system prompt, so a usage row says which prompt produced it."""
        return hashlib.sha256(self.system_prompt.encode()).hexdigest()
