"""Masking values as numbered placeholders, and putting them back, whole or streamed.

One `Masker` per conversation: the same value (in any spacing) gets the same placeholder
in every message of it, numbered per kind in order of first appearance, so the numbering
is the same on every turn while the history is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from backend.guard.kinds import LABELS, Finding, PiiType

PLACEHOLDER = re.compile(r"\[(?:" + "|".join(LABELS.values()) + r")_[0-9]{1,6}\]")
_OPENINGS = tuple(f"[{label}_" for label in LABELS.values())
_LONGEST = max(len(opening) for opening in _OPENINGS) + 7  # six digits and the bracket

# The sentence added to the system prompt when anything was masked.
EXPLANATION = (
    "Values such as [IBAN_1] or [EMAIL_2] are placeholders for the user's real data; "
    "repeat them exactly as written when you refer to those values."
)


class Masker:
    """Replaces findings with placeholders and remembers each placeholder's original."""

    def __init__(self) -> None:
        self._placeholders: dict[tuple[PiiType, str], str] = {}
        self._next: dict[PiiType, int] = {}
        self.originals: dict[str, str] = {}  # placeholder -> the text it replaced (first seen)

    def mask(self, text: str, findings: Sequence[Finding]) -> str:
        """`text` with each finding (in text order, none overlapping) replaced."""
        if not findings:
            return text
        parts: list[str] = []
        position = 0
        for finding in findings:
            parts.append(text[position : finding.start])
            parts.append(self._placeholder(finding, text[finding.start : finding.end]))
            position = finding.end
        parts.append(text[position:])
        return "".join(parts)

    def counts(self) -> dict[PiiType, int]:
        """How many distinct values of each kind were masked."""
        return {kind: count for kind, count in self._next.items() if count}

    def _placeholder(self, finding: Finding, original: str) -> str:
        known = self._placeholders.get((finding.kind, finding.key))
        if known is not None:
            return known
        number = self._next.get(finding.kind, 0) + 1
        self._next[finding.kind] = number
        placeholder = f"[{LABELS[finding.kind]}_{number}]"
        self._placeholders[(finding.kind, finding.key)] = placeholder
        self.originals[placeholder] = original
        return placeholder


def restore(text: str, originals: Mapping[str, str]) -> str:
    """`text` with every known placeholder put back; unknown ones are left as written."""
    if "[" not in text:
        return text
    return PLACEHOLDER.sub(lambda m: originals.get(m.group(), m.group()), text)


def _could_become_placeholder(tail: str) -> bool:
    """Whether `tail` (from a `[` to the end) is the start of a placeholder still arriving."""
    if len(tail) >= _LONGEST:
        return False
    for opening in _OPENINGS:
        if len(tail) <= len(opening):
            if opening.startswith(tail):
                return True
        elif tail.startswith(opening) and tail[len(opening) :].isdigit():
            return True
    return False


class StreamRestorer:
    """Restores a streamed answer piece by piece, holding back only a possibly partial
    placeholder at the end of a piece (at most ~20 characters), never the answer."""

    def __init__(self, originals: Mapping[str, str]) -> None:
        self._originals = originals
        self._held = ""

    def feed(self, text: str) -> str:
        """The restored text that can go out now."""
        if self._held:
            text, self._held = self._held + text, ""
        cut = text.rfind("[")
        if cut != -1 and "]" not in text[cut:] and _could_become_placeholder(text[cut:]):
            text, self._held = text[:cut], text[cut:]
        return restore(text, self._originals)

    def flush(self) -> str:
        """What was held back when the stream ends: it never became a placeholder."""
        held, self._held = self._held, ""
        return held
