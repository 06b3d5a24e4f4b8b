"""E-mail addresses and phone numbers.

E-mail: a local part, `@`, and a domain whose last label is a 2-63 letter TLD.
Phones: candidates of phone shape only (an international `+` or `00` prefix, an area code
in brackets, a national trunk `0`, or the NANP 3-3-4 grouping), then `phonenumbers` must
call the number valid: in international form on its own, in national form for one of the
configured regions. Bare digit runs of other shapes (amounts, references) are never tried.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import phonenumbers

from backend.guard.banking import Span

_EMAIL = re.compile(
    r"(?<![\w.%+\-'])[\w.%+\-']*[\w%+\-']@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w\-]|\.\w)"
)


def find_emails(text: str) -> Iterator[Span]:
    """E-mail addresses, with their case folded for the key."""
    if "@" not in text:  # most messages: one scan in C, no pattern run
        return
    for match in _EMAIL.finditer(text):
        yield match.start(), match.end(), match.group().lower()


_S = r"[ \-.\u00a0]"  # one separator between groups
_D = "[0-9]"
_PHONE = re.compile(
    r"(?<![\w+\-/.,])(?:"
    rf"(?P<intl>(?:\+|00)[ \u00a0]?[1-9]{_D}{{0,2}}(?:{_S}?\(?{_D}{{1,5}}\)?){{1,6}})"
    rf"|(?P<nanp>\({_D}{{3}}\){_S}?{_D}{{3}}{_S}?{_D}{{4}}"
    rf"|{_D}{{3}}(?P<s>[\-. ]){_D}{{3}}(?P=s){_D}{{4}})"
    rf"|\({_D}{{2,5}}\){_S}?{_D}{{2,4}}(?:{_S}?{_D}{{2,4}}){{1,3}}"
    rf"|0{_D}{{1,4}}(?:{_S}|/)?{_D}{{2,8}}(?:{_S}{_D}{{2,8}}){{0,4}}"
    r")(?![\w\-]|[.,/][0-9])"
)


def check_regions(regions: Sequence[str]) -> list[str]:
    """The regions, upper case; a ValueError names one `phonenumbers` does not know."""
    known = phonenumbers.SUPPORTED_REGIONS
    wrong = [region for region in regions if region.upper() not in known]
    if wrong:
        raise ValueError(f"unknown phone regions {wrong}; use ISO 3166 codes such as GB, DE")
    return [region.upper() for region in regions]


class PhoneFinder:
    """Phone numbers valid in international form, or in national form in `regions`."""

    # Candidates found not to be phone numbers (a CUSIP, a reference with a leading 0),
    # remembered so a history re-sent every turn is not parsed again: ~50 us a region each.
    # Only these are kept; a valid number is never stored.
    _NOT_PHONES_MAX = 4096

    def __init__(self, regions: Sequence[str]) -> None:
        self._regions = tuple(region.upper() for region in regions)
        self._nanp = tuple(dict.fromkeys(("US", "CA", *self._regions)))
        self._not_phones: set[str] = set()

    def __call__(self, text: str, pos: int = 0, endpos: int | None = None) -> Iterator[Span]:
        """The phone numbers in `text[pos:endpos]`, keyed by their E.164 form."""
        for match in _PHONE.finditer(text, pos, len(text) if endpos is None else endpos):
            candidate = match.group()
            digits = sum(char.isdigit() for char in candidate)
            if not 7 <= digits <= 17 or candidate in self._not_phones:
                continue
            if match.group("intl") is not None:
                e164 = _e164("+" + candidate[2:] if candidate[0] == "0" else candidate, None)
            else:
                # A US-style grouping is read as North American first, others never are.
                e164 = self._national(candidate, nanp=match.group("nanp") is not None)
            if e164 is not None:
                yield match.start(), match.end(), e164
            else:
                if len(self._not_phones) >= self._NOT_PHONES_MAX:
                    self._not_phones.clear()
                self._not_phones.add(candidate)

    def _national(self, candidate: str, *, nanp: bool) -> str | None:
        regions = self._nanp if nanp else self._regions
        for region in regions:
            e164 = _e164(candidate, region)
            if e164 is not None:
                return e164
        return None


def _e164(candidate: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
