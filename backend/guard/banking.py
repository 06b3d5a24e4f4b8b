"""Payment card numbers and IBANs: a pattern finds candidates, a checksum decides.

Cards: 13-19 digits, contiguous or in the groupings cards are printed in (4-4-4-4, 4-6-5,
...), with one separator used throughout; Luhn, and an issuer prefix of a known scheme.
Grouping rules out what merely runs together (two dates, a table row of amounts).
IBANs: a country code, two check digits, then exactly that country's length (the
python-stdnum registry), spaces allowed, and the mod-97 and national format checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from string import ascii_uppercase

from stdnum import iban as stdnum_iban
from stdnum import luhn, numdb

from backend.guard.shape import shape_of

Span = tuple[int, int, str]  # start, end, normalised value

_SEP = r"[ \-.\u00a0]"
# ASCII digits only ([0-9], not \d): a third faster to scan, and what pasted numbers use.
_CARD = re.compile(
    # Not inside a longer number, nor the digits of a decimal amount.
    r"(?<![0-9])(?<![0-9][.,])(?:"
    rf"[0-9]{{4}}({_SEP})[0-9]{{4}}\1[0-9]{{4}}\1[0-9]{{1,4}}(?:\1[0-9]{{1,3}})?"  # 4-4-4-x(-y)
    rf"|[0-9]{{4}}({_SEP})[0-9]{{6}}\2[0-9]{{4,5}}"  # 4-6-4 (Diners), 4-6-5 (Amex)
    r"|[0-9]{13,19}"
    r")(?![0-9]|[.,][0-9])"
)
_NOT_DIGIT = re.compile(r"[^0-9]")

# (lowest prefix, highest prefix, card lengths): the schemes' published IIN ranges.
_ISSUERS: tuple[tuple[int, int, frozenset[int]], ...] = tuple(
    (lo, hi, frozenset(lengths))
    for lo, hi, lengths in (
        (4, 4, (13, 16, 19)),  # Visa
        (51, 55, (16,)),  # Mastercard
        (2221, 2720, (16,)),  # Mastercard 2-series
        (34, 34, (15,)),  # American Express
        (37, 37, (15,)),
        (300, 305, (14, 15, 16, 17, 18, 19)),  # Diners Club
        (36, 36, (14, 15, 16, 17, 18, 19)),
        (38, 39, (14, 15, 16, 17, 18, 19)),
        (6011, 6011, (16, 17, 18, 19)),  # Discover
        (644, 649, (16, 17, 18, 19)),
        (65, 65, (16, 17, 18, 19)),
        (622126, 622925, (16, 17, 18, 19)),
        (3528, 3589, (16, 17, 18, 19)),  # JCB
        (62, 62, (16, 17, 18, 19)),  # UnionPay
        (81, 81, (16, 17, 18, 19)),
        (2200, 2204, (16, 17, 18, 19)),  # Mir
        (5018, 5018, (13, 14, 15, 16, 17, 18, 19)),  # Maestro
        (5020, 5020, (13, 14, 15, 16, 17, 18, 19)),
        (5038, 5038, (13, 14, 15, 16, 17, 18, 19)),
        (5893, 5893, (13, 14, 15, 16, 17, 18, 19)),
        (6304, 6304, (13, 14, 15, 16, 17, 18, 19)),
        (6759, 6763, (13, 14, 15, 16, 17, 18, 19)),
        (60, 60, (16,)),  # RuPay
        (508, 508, (16,)),
        (506099, 506198, (16, 17, 18, 19)),  # Verve
        (9792, 9792, (16,)),  # Troy
    )
)


# For each card length, its schemes' prefix ranges as ranges of six-digit prefixes: one
# int() of a number's first six digits, compared with each, instead of one per scheme.
_SIX_DIGIT_RANGES: dict[int, tuple[tuple[int, int], ...]] = {
    length: tuple(
        (lo * 10 ** (6 - len(str(lo))), (hi + 1) * 10 ** (6 - len(str(lo))) - 1)
        for lo, hi, lengths in _ISSUERS
        if length in lengths
    )
    for length in range(13, 20)
}


def known_issuer(digits: str) -> bool:
    """Whether a card number's prefix and length belong to a known card scheme."""
    ranges = _SIX_DIGIT_RANGES.get(len(digits))
    if not ranges:
        return False
    six = int(digits[:6])
    for lo, hi in ranges:
        if lo <= six <= hi:
            return True
    return False


def find_cards(text: str, pos: int = 0, endpos: int | None = None) -> Iterator[Span]:
    """Card numbers with a valid Luhn check digit and a known issuer prefix."""
    for match in _CARD.finditer(text, pos, len(text) if endpos is None else endpos):
        digits = _NOT_DIGIT.sub("", match.group())
        if 13 <= len(digits) <= 19 and known_issuer(digits) and luhn.is_valid(digits):
            yield match.start(), match.end(), digits


_BBAN_PART = re.compile(r"(\d+)!?[nac]")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
# A letter counts as two digits in the mod-97 check: A = 10, ..., Z = 35.
_LETTER_VALUES = str.maketrans({letter: str(10 + n) for n, letter in enumerate(ascii_uppercase)})
_IBAN_DB = numdb.get("iban")


@lru_cache(maxsize=512)
def iban_length(country: str) -> int | None:
    """The length of a country's IBANs (python-stdnum's registry); None if it has none."""
    info = _IBAN_DB.info(country)[0][1]
    bban = info.get("bban") if info else None
    if not bban:
        return None
    return 4 + sum(int(n) for n in _BBAN_PART.findall(bban))


def find_ibans(text: str, shape: bytes | None = None) -> Iterator[Span]:
    """IBANs of a known country, of its length, with a valid mod-97 check.

    `shape` is `shape_of(text)`, when the caller has it already.
    """
    shape = shape_of(text) if shape is None else shape
    search = 0
    # An IBAN starts with two letters, the country code in either case ("de89 3704 ..." is
    # the same account), and two digits: one bytes.find in the shape finds the next such
    # place (a pattern starting with [A-Za-z] is tried at nearly every character of prose).
    while (start := shape.find(b"aa00", search)) != -1:
        # The next search starts after the IBAN found here, or just after this start (an
        # IBAN may follow a candidate that ran on into the next words).
        search = start + 1
        if start and text[start - 1].isalnum():
            continue  # inside a longer word
        length = iban_length(text[start : start + 2].upper())
        if length is None:
            continue  # no such country (an ISIN's US, XS, ...)
        match = _iban_of_length(length).match(text, start)
        if match is None:
            continue  # fewer letters and digits than the country's IBANs hold
        value = _NOT_ALNUM.sub("", match.group()).upper()
        if _mod97(value) == 1 and stdnum_iban.is_valid(value, check_country=False):
            search = match.end()
            yield start, match.end(), value


@lru_cache(maxsize=64)
def _iban_of_length(length: int) -> re.Pattern[str]:
    """`length` letters and digits, at most one space or dash between any two."""
    return re.compile(rf"[A-Za-z0-9](?:[ \-\u00a0]?[A-Za-z0-9]){{{length - 1}}}")


def _mod97(value: str) -> int:
    """The ISO 7064 mod-97 remainder of an IBAN (1 when valid), in C rather than in
    python-stdnum's loop: most candidates (ISINs, references) fail it, and then the full
    validation, which checks it again before the country's format, is not needed."""
    return int((value[4:] + value[:4]).translate(_LETTER_VALUES)) % 97
