"""A specialist's PII policy, the portal's default, and the guard that applies them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from backend.guard.detect import Detector
from backend.guard.kinds import ALL_TYPES, PiiType
from backend.guard.mask import Masker

Mode = Literal["off", "mask", "block"]


class PiiPolicy(BaseModel):
    """`pii: {mode, types, restore}` on a specialist; `types` left out means all of them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode
    types: tuple[PiiType, ...] = ALL_TYPES
    restore: bool = True

    @field_validator("types")
    @classmethod
    def _some_types(cls, value: tuple[PiiType, ...]) -> tuple[PiiType, ...]:
        if not value:
            raise ValueError("list at least one type, or leave `types` out for all of them")
        return tuple(dict.fromkeys(value))


@dataclass(frozen=True, slots=True)
class Scan:
    """What the guard made of one conversation: its texts as they may leave, and counts."""

    mode: Mode
    # The user's data: kept out of repr, so a Scan in a log line shows only the counts.
    texts: tuple[str, ...] = field(repr=False)  # masked in `mask` mode; else unchanged
    counts: dict[PiiType, int]  # distinct values found, per kind
    originals: dict[str, str] = field(repr=False)  # placeholder -> the user's own text

    @property
    def found(self) -> bool:
        """Whether anything was found."""
        return bool(self.counts)


class Guard:
    """Applies a policy (the specialist's own, or the portal default) to a conversation."""

    def __init__(self, detector: Detector, default: PiiPolicy) -> None:
        self._detector = detector
        self.default = default

    def policy(self, own: PiiPolicy | None) -> PiiPolicy:
        """The policy in force for a specialist with this `pii` field (None: the default)."""
        return own if own is not None else self.default

    def scan(self, texts: Sequence[str], policy: PiiPolicy) -> Scan:
        """Find (and in `mask` mode, mask) values in every text, numbered across all."""
        if policy.mode == "off":
            return Scan("off", tuple(texts), {}, {})
        findings = [self._detector.find(text, policy.types) for text in texts]
        if not any(findings):  # most requests: no masker, nothing copied
            return Scan(policy.mode, tuple(texts), {}, {})
        masker = Masker()
        masked = tuple(map(masker.mask, texts, findings))
        if policy.mode == "block":
            masked = tuple(texts)  # never sent: nothing to mask
        return Scan(policy.mode, masked, masker.counts(), masker.originals)
