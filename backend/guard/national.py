"""National identifiers: US SSN, UK National Insurance numbers, and a configurable list of
others that python-stdnum validates (PII_NATIONAL_IDS names entries of `NATIONAL_IDS`).

Ids whose only check is weak (a bare 9-digit SSN, the Dutch BSN's 11-test, the German tax
id's check digit: roughly one random number in ten to a hundred passes) are taken only
with a keyword shortly before them ("SSN", "BSN", "Steuer-ID", ...), so invoice and order
numbers of the same length pass. Ids with a strong check (the SSN in its 3-2-4 form, the
NINO's letters, the NIR's mod-97 key, the DNI/NIE letter) need no keyword.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType

from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.nl import bsn
from stdnum.pl import pesel
from stdnum.us import ssn

from backend.guard.banking import Span

_SPACING = re.compile(r"[\s\-.]")
CONTEXT_CHARS = 40  # how far before a weak id its keyword may be (no number between)
# How far past a run of digits the detector searches for an id: a Corsican NIR's letter
# and eight digits after a run of six, with their spaces.
WINDOW_AFTER = 16


@dataclass(frozen=True, slots=True)
class NationalId:
    """One kind of national identifier: where its candidates are, and what validates them."""

    name: str
    pattern: re.Pattern[str]
    validator: ModuleType  # a python-stdnum module: is_valid() and compact()
    digits: frozenset[int]  # how many digits its runs hold (the detector skips other runs)
    keywords: tuple[str, ...] = ()  # when set, one of them must come shortly before
    letter_after: bool = False  # ends in a check letter: a run followed by none is skipped
    # For a digit count, what must follow such a run (a pattern matched where it ends) for
    # a search of its window to find anything: the detector skips the search elsewhere.
    follows: Mapping[int, re.Pattern[str]] = field(default_factory=dict)

    def find(self, text: str, pos: int = 0, endpos: int | None = None) -> Iterator[Span]:
        """Valid ids of this kind in `text[pos:endpos]`."""
        for match in self.pattern.finditer(text, pos, len(text) if endpos is None else endpos):
            if self.keywords and not _near(text, match.start(), self.keywords):
                continue
            value = _SPACING.sub("", match.group()).upper()
            if self.validator.is_valid(value):
                yield match.start(), match.end(), value


def _near(text: str, start: int, keywords: tuple[str, ...]) -> bool:
    """A keyword shortly before `start`, with no other number in between."""
    before = context_before(text, start)
    last = max(before.rfind(word) for word in keywords)
    return last != -1 and not any(char.isdigit() for char in before[last:])


def context_before(text: str, start: int) -> str:
    """The lower-cased text in which a keyword before `start` counts."""
    return text[max(0, start - CONTEXT_CHARS) : start].lower()


def _id(pattern: str) -> re.Pattern[str]:
    # Not part of a longer word or number.
    return re.compile(rf"(?<![\w\-]){pattern}(?![\w]|-\w)")


_SSN_KEYWORDS = ("ssn", "social security", "ss#", "ss no")
_NINE = frozenset({9})

# Always on (within the `national_id` type): the US and UK identifiers.
BUILT_IN: tuple[NationalId, ...] = (
    NationalId("us.ssn", _id(r"[0-9]{3}(?P<s>[\- ])[0-9]{2}(?P=s)[0-9]{4}"), ssn, _NINE),
    NationalId("us.ssn", _id(r"[0-9]{9}"), ssn, _NINE, _SSN_KEYWORDS),
)

# The configurable others, by python-stdnum module name.
NATIONAL_IDS: dict[str, NationalId] = {
    entry.name: entry
    for entry in (
        NationalId(
            "de.idnr", _id(r"[0-9]{2} ?[0-9]{3} ?[0-9]{3} ?[0-9]{3}"), idnr, frozenset({11}),
            ("steuer", "idnr", "tax id", "tax-id", "taxpayer", "identifikationsnummer"),
        ),
        NationalId(
            "fr.nir",
            _id(r"[12] ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2[AB]) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}"),
            # Corsica's 2A / 2B split the digits: six in the run before the letter.
            nir, frozenset({6, 15}),
            # A NIR in a six-digit run's window is Corsica's, its letter right after the
            # run, or one written without spaces (15 characters) starting one character
            # after the run, which the window holds whole (its own run may go on with
            # other digits); none starting later fits in the window.
            follows={6: re.compile(r"[AB]|[\s\S][12]")},
        ),
        NationalId(
            "nl.bsn", _id(r"[0-9]{4}\.?[0-9]{2}\.?[0-9]{3}|[0-9]{3} ?[0-9]{3} ?[0-9]{3}"), bsn,
            _NINE, ("bsn", "burgerservice", "sofi"),
        ),
        NationalId("es.dni", _id(r"[0-9]{8}-?[A-Za-z]"), dni, frozenset({8}), letter_after=True),
        NationalId(
            "es.nie", _id(r"[XYZxyz]-?[0-9]{7}-?[A-Za-z]"), nie, frozenset({7}),
            letter_after=True,
        ),
        NationalId("pl.pesel", _id(r"[0-9]{11}"), pesel, frozenset({11}), ("pesel",)),
    )
}
DEFAULT_NATIONAL_IDS = ("de.idnr", "fr.nir", "nl.bsn", "es.dni", "es.nie")

# UK NINO: two prefix letters (neither D, F, I, Q, U, V; the second not O; some pairs
# never issued), six digits, a suffix A-D; HMRC prints it with spaces in pairs.
_NINO = re.compile(
    r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b"
)


# What follows a NINO's six digits: its suffix letter, one space allowed before it.
NINO_FOLLOWS = re.compile(r" ?[A-D]")


def find_ninos(text: str, pos: int = 0, endpos: int | None = None) -> Iterator[Span]:
    """UK National Insurance numbers."""
    for match in _NINO.finditer(text, pos, len(text) if endpos is None else endpos):
        yield match.start(), match.end(), match.group().replace(" ", "")


def national_ids(names: Sequence[str]) -> tuple[NationalId, ...]:
    """The built-in ids plus the named entries of `NATIONAL_IDS` (a ValueError names a typo)."""
    unknown = [name for name in names if name not in NATIONAL_IDS]
    if unknown:
        raise ValueError(
            f"unknown national ids {unknown}; known: {', '.join(sorted(NATIONAL_IDS))}"
        )
    return (*BUILT_IN, *(NATIONAL_IDS[name] for name in dict.fromkeys(names)))
