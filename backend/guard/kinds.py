"""The kinds of value the guard finds, their placeholder labels, and one finding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

PiiType = Literal["card", "iban", "email", "phone", "national_id", "secret"]
ALL_TYPES: tuple[PiiType, ...] = get_args(PiiType)

# `[IBAN_1]`, `[CARD_2]`, ...: the label a placeholder of each kind carries.
LABELS: dict[PiiType, str] = {
    "card": "CARD",
    "iban": "IBAN",
    "email": "EMAIL",
    "phone": "PHONE",
    "national_id": "NATIONAL_ID",
    "secret": "SECRET",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One value found in a text: its kind, where it is, and its normalised form.

    `key` is the value without spacing or case differences, so the same value written
    twice gets the same placeholder; it is the user's data, so it is kept out of `repr`.
    """

    kind: PiiType
    start: int
    end: int
    key: str = field(repr=False)
