"""All the detectors together: which run, where, and how overlaps are settled.

Speed comes from running little: secrets only where their literal prefix appears, e-mail
only where there is an `@`, and the rest where the text's shape (`shape.py`: one byte a
character) says their values could be: IBANs where two letters precede two digits, the
other number detectors around runs of digits (one scan of the shape finds them), each only
on runs with as many digits as its numbers hold, and only where what its numbers need
after their digits (a check letter, a NINO's suffix) is there.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Collection, Iterable, Sequence
from functools import lru_cache

from backend.guard.banking import Span, find_cards, find_ibans
from backend.guard.contacts import PhoneFinder, find_emails
from backend.guard.kinds import ALL_TYPES, Finding, PiiType
from backend.guard.national import (
    DEFAULT_NATIONAL_IDS,
    NINO_FOLLOWS,
    WINDOW_AFTER,
    NationalId,
    context_before,
    find_ninos,
    national_ids,
)
from backend.guard.secrets import find_secrets
from backend.guard.shape import DIGIT, shape_of

DEFAULT_PHONE_REGIONS = ("GB", "DE", "FR", "NL", "US")
_NUMBER_TYPES = frozenset({"card", "national_id", "phone"})
# A run of six or more digits, at most two separators between any two, found in the shape
# (digits `0`, separators `-`): every number the detectors look for holds one (a NINO's six
# digits are the shortest). It is tried only at a run's first digit (the lookbehind), the
# possessive quantifiers give nothing back (none could lead to another match), and the
# first five digits after the first are written out, not `(...){5,}`: most runs tried
# (years, amounts) fail within them, and sre repeats a single character far faster than
# a group.
_GAP_DIGIT = rb"-{0,2}+0"
_RUN = re.compile(rb"0(?<!00)" + _GAP_DIGIT * 5 + rb"(?:" + _GAP_DIGIT + rb")*+")
# How far around a run its number may reach: a phone's `+`, a DNI's letter, an NIE's X.
_AROUND = 4
# Whether a phone number could start where a run of digits does (matched at the run's start,
# with its end as the end): the cheap test before the phone pattern, in C. Dates and
# references have none of it.
_PHONE_SHAPED = re.compile(
    r"(?<=[+(])|(?<=\+ )"  # after a `+`, a `(`, or a `+` and a space
    r"|(?<![^\W_]|[-/.,])"  # or, not inside a word or a number (no letter, digit, -/., before):
    r"(?:0|[\s\S]{3}[-. )][\s\S]{8})"  # a national trunk 0, or the NANP 3-3-4 grouping
)
# A run's groups of digits between its spaces (other separators keep a group together).
_GROUP = re.compile(r"[0-9](?:[^ 0-9]{0,2}[0-9])*")
# A letter where a run ends, a `-` allowed before it: what an id with a check letter needs
# there (any letter \w holds: never narrower than `_letter_after`, which decides).
_LETTER_NEXT = re.compile(r"-?[^\W\d_]")


@lru_cache(maxsize=1)
def ascii_table() -> dict[int, str]:
    """Other scripts' digits (fullwidth `４`, Arabic-Indic `٤`, ...) to ASCII, other spaces
    to a space and dashes to `-`: one character for one, so positions stay where they were."""
    table: dict[int, str] = {}
    for code in range(128, 0x20000):  # every script's digits are below (built once: ~50 ms)
        char = chr(code)
        category = unicodedata.category(char)
        if category == "Nd":
            table[code] = str(unicodedata.digit(char))
        elif category == "Zs":
            table[code] = " "
        elif category == "Pd" or char == "\u2212":
            table[code] = "-"
    return table


FIRST_MAPPED = "\u058a"  # after U+00A0, the first character the table maps


# The most specific first: where two findings overlap, the earlier kind wins.
_ORDER: tuple[PiiType, ...] = ("secret", "iban", "email", "card", "national_id", "phone")
SECRET, IBAN, EMAIL, CARD, NATIONAL_ID, PHONE = range(len(_ORDER))
Found = list[tuple[int, Span]]  # (the kind's place in _ORDER, the span)


class Detector:
    """Finds every value of the asked types in a text, each character in at most one.

    Where two findings overlap, the earlier kind in `_ORDER` wins: a secret over the
    digits inside it, an IBAN over the card-like run of its digits, and so on.
    """

    def __init__(
        self,
        *,
        national_id_names: Sequence[str] = DEFAULT_NATIONAL_IDS,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
    ) -> None:
        ids = national_ids(national_id_names)
        # For each digit count, the ids whose numbers hold that many (none: left out); a
        # NINO's six digits are looked at whatever ids are configured.
        by_digits = {n: tuple(k for k in ids if n in k.digits) for n in range(6, 20)}
        self._ids_by_digits = {n: kinds for n, kinds in by_digits.items() if kinds or n == 6}
        self._id_gates = {n: _gate(n, kinds) for n, kinds in self._ids_by_digits.items()}
        self._phones = PhoneFinder(phone_regions)
        self._to_ascii = ascii_table()
        assert set(_ORDER) == set(ALL_TYPES)

    def find(self, text: str, types: Collection[PiiType] = ALL_TYPES) -> list[Finding]:
        """The findings in `text`, in text order, none overlapping.

        A value written in other digits or with other spaces (`４１１１ １１１１ ...`) is
        found as if typed in ASCII: the positions are the same, the keys the ASCII ones.
        """
        if not text.isascii():
            text = self._as_ascii(text)
        found: Found = []
        if "secret" in types:
            _take(found, SECRET, find_secrets(text))
        if "email" in types:
            _take(found, EMAIL, find_emails(text))
        numbers = not _NUMBER_TYPES.isdisjoint(types)
        if numbers or "iban" in types:
            shape = shape_of(text)
            if DIGIT in shape:  # every value left holds a digit: most short messages stop here
                if "iban" in types:
                    _take(found, IBAN, find_ibans(text, shape))
                if numbers:
                    self._numbers(text, shape, types, found)
        return _settle(found) if found else []

    def _as_ascii(self, text: str) -> str:
        # Below U+058A the table holds only the no-break space: text in Latin scripts (with
        # accents, umlauts) costs a max() and a replace(), not a translate() at ~50 ns a char.
        if max(text) < FIRST_MAPPED:
            return text.replace("\u00a0", " ")
        return text.translate(self._to_ascii)

    def _numbers(
        self, text: str, shape: bytes, types: Collection[PiiType], found: Found
    ) -> None:
        """Try, around each run of digits, the number detectors that fit its digit count."""
        size = len(text)
        for run in _RUN.finditer(shape):
            start, end = run.span()
            digits = shape.count(DIGIT, start, end)
            # Around the whole run its number may reach a little past it (a DNI's letter).
            self._part(text, start, end, digits, types, found, reach=min(size, end + _AROUND))
            if text.find(" ", start, end) != -1:
                self._spaced_parts(text, shape, start, end, types, found)

    def _spaced_parts(
        self, text: str, shape: bytes, start: int, end: int, types: Collection[PiiType],
        found: Found,
    ) -> None:
        """The number detectors again on the run's spaced-off beginnings and endings.

        A run joins numbers a space apart: a card and its expiry (`4111 1111 1111 1111
        12/27 123`), an SSN and a count (`123-45-6789 12 items`, `12 123-45-6789`). Its
        whole digit count then fits no detector, so each beginning and each ending of its
        space-separated groups is tried as a run of its own, the detectors seeing the text
        end where it does. Not its middles (a number inside a longer one), and phones only
        from the run's first digit: `0532 0130 01` inside an account number is no phone.
        """
        groups = [m.span() for m in _GROUP.finditer(text, start, end)]
        counts = [shape.count(DIGIT, a, b) for a, b in groups]
        last = len(groups) - 1
        digits = 0
        for j in range(last):  # beginnings: groups 0..j
            digits += counts[j]
            if digits > 19:  # longer than any number looked for
                break
            part_end = groups[j][1]
            self._part(text, start, part_end, digits, types, found, reach=part_end)
        digits = 0
        for i in range(last, 0, -1):  # endings: groups i..last
            digits += counts[i]
            if digits > 19:
                break
            self._part(text, groups[i][0], end, digits, types, found, reach=end, phones=False)

    def _part(
        self, text: str, start: int, end: int, digits: int, types: Collection[PiiType],
        found: Found, *, reach: int, phones: bool = True,
    ) -> None:
        """The detectors that fit `digits` on the digits from `start` to `end`, each seeing
        the text end at `reach`."""
        if "card" in types and 13 <= digits <= 19:
            _take(found, CARD, find_cards(text, start, reach))
        if "national_id" in types and digits in self._id_gates:
            gate = self._id_gates[digits]
            if gate is None or gate.match(text, end):
                self._national(text, start, end, digits, found)
        if phones and "phone" in types and 7 <= digits <= 17 and _PHONE_SHAPED.match(
            text, start, end
        ):
            _take(found, PHONE, self._phones(text, max(0, start - _AROUND), reach))

    def _national(self, text: str, start: int, end: int, digits: int, found: Found) -> None:
        """The national ids around one run of `digits` digits."""
        before, size = max(0, start - _AROUND), len(text)
        if digits == 6 and NINO_FOLLOWS.match(text, end):
            _take(found, NATIONAL_ID, find_ninos(text, before, min(size, end + _AROUND)))
        context: str | None = None
        for kind in self._ids_by_digits[digits]:
            if kind.letter_after and not _letter_after(text, end):
                continue
            follows = kind.follows.get(digits)
            if follows is not None and follows.match(text, end) is None:
                continue
            if kind.keywords:  # a cheap look for its keyword before the pattern runs
                context = context_before(text, start) if context is None else context
                if not any(word in context for word in kind.keywords):
                    continue
            _take(found, NATIONAL_ID, kind.find(text, before, min(size, end + WINDOW_AFTER)))


def _gate(digits: int, kinds: Iterable[NationalId]) -> re.Pattern[str] | None:
    """What must follow a run of `digits` digits for any of `kinds` (or, at six, a NINO)
    to be around it, as one pattern; None if one of them needs nothing there.

    Six-digit runs (amounts, references) and dates rarely have it, and their ids are
    then not looked for: each id's own test, in `_national`, still decides.
    """
    patterns = [NINO_FOLLOWS] if digits == 6 else []
    for kind in kinds:
        follows = _LETTER_NEXT if kind.letter_after else kind.follows.get(digits)
        if follows is None:
            return None
        patterns.append(follows)
    return re.compile("|".join(f"(?:{pattern.pattern})" for pattern in patterns))


def _letter_after(text: str, end: int) -> bool:
    """Whether a letter follows `end`, a `-` allowed before it (`12345678-Z`)."""
    return text[end : end + 2].lstrip("-")[:1].isalpha()


def _take(found: Found, rank: int, spans: Iterable[Span]) -> None:
    for span in spans:
        found.append((rank, span))


def _settle(found: Found) -> list[Finding]:
    """Keep each finding that overlaps none kept before it: kinds taken in `_ORDER`, and
    within a kind the longest first (`+39 02 1234 5678` over the `+39 02 1234` in it)."""
    starts: list[int] = []  # the kept spans, sorted by start
    kept: list[Finding] = []
    for rank, (start, end, key) in sorted(found, key=_longest_first):
        index = bisect_left(starts, start)
        if index > 0 and kept[index - 1].end > start:
            continue  # overlaps the span before it
        if index < len(starts) and starts[index] < end:
            continue  # overlaps the span after it (or is the same, found twice)
        starts.insert(index, start)
        kept.insert(index, Finding(_ORDER[rank], start, end, key))
    return kept


def _longest_first(item: tuple[int, Span]) -> tuple[int, int, int]:
    rank, (start, end, _) = item
    return rank, start - end, start
