"""The specialist: a named persona bound to one provider, model and parameters."""

from __future__ import annotations

import hashlib
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.providers.factory import ProviderTarget, check_provider_name
from backend.ratelimit.policy import LimitOverride


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

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        check_provider_name(value)
        return value

    @property
    def target(self) -> ProviderTarget:
        """What the provider factory needs to hand out this specialist's provider."""
        return ProviderTarget(self.provider, self.base_url, self.api_key_env)

    @property
    def prompt_hash(self) -> str:
        """SHA-256 of the system prompt, so a usage row says which prompt produced it."""
        return hashlib.sha256(self.system_prompt.encode()).hexdigest()
