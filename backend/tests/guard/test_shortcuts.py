"""The detectors' shortcuts look at less of a text; they never find less, or more.

Each cheap test that lets a detector skip work (scans of the text's shape, the tests of
what follows a run of digits, the IBAN and card checks done in C) is checked against the
slower form it replaced, or against the search it spares, on generated text dense in
digits, separators, letters and real values. Bounded and derandomized, so CI runs the same
examples every time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from stdnum import iban as stdnum_iban
from stdnum.iso7064 import mod_97_10

from backend.guard.banking import _ISSUERS, Span, _mod97, find_ibans, iban_length, known_issuer
from backend.guard.detect import _RUN
from backend.guard.shape import DIGIT, shape_of
from backend.tests.guard.corpus import corpus

FUZZ = settings(
    max_examples=400, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_VALUES = sorted({value for s in corpus() if s.label == "valid" for _, value in s.expected})
# Pieces that make numbers, ids and IBANs meet in every way: digit groups, the separators
# runs are joined by, single letters (check letters, NINO suffixes, Corsica's 2A), other
# punctuation, other scripts' digits and spaces, and real values, whole or with a change;
# and runs of digits with what may come before (a phone's +) and after (an id's letter).
_RUNS = st.tuples(
    st.sampled_from(["", "+", "+ ", "(", ",", "X", "x-", "AB "]),
    st.text("0123456789", min_size=6, max_size=15),
    st.sampled_from(["", "A", "B", "é", "-Z", " C", "  D", ",1", ";2"]),
).map("".join)
_PIECES = st.one_of(
    _RUNS,
    st.text("0123456789", min_size=1, max_size=9),
    st.sampled_from([" ", "-", ".", "/", "(", ")", "\u00a0", "  ", " -", "---", ",", ";",
                     "+", "+ ", "#", "\n", "_"]),
    st.sampled_from(["A", "B", "C", "D", "J", "X", "Z", "a", "x", "2A", "AB", "DE", "GB",
                     "de", "SSN ", "BSN ", "é", "\u0664", "\uff14", "\u2009"]),
    st.sampled_from(_VALUES),
    st.tuples(st.sampled_from(_VALUES), st.integers(0, 99), st.sampled_from("07 -AZ,")).map(
        lambda v: v[0][: v[1] % len(v[0])] + v[2] + v[0][v[1] % len(v[0]) + 1 :]
    ),
)
TEXTS = st.lists(_PIECES, max_size=24).map("".join)

# The digit-run pattern as it was, over the text itself.
_RUN_IN_TEXT = re.compile(r"[0-9](?:[ \-./()\u00a0]{0,2}[0-9]){5,}")


@FUZZ
@given(TEXTS)
def test_runs_found_in_the_shape_are_the_runs_of_the_text(text: str) -> None:
    shape = shape_of(text)
    runs = [m.span() for m in _RUN.finditer(shape)]
    assert runs == [m.span() for m in _RUN_IN_TEXT.finditer(text)]
    for start, end in runs:
        assert shape.count(DIGIT, start, end) == sum(c in "0123456789" for c in text[start:end])


# The IBAN search as it was: a pattern over the whole text, the candidate cut afterwards.
_IBAN_IN_TEXT = re.compile(
    r"[0-9](?<=[A-Za-z][A-Za-z][0-9])[0-9](?:[ \-\u00a0]?[A-Za-z0-9]){10,32}"
)


def _ibans_in_text(text: str) -> Iterator[Span]:
    search = 2
    while (match := _IBAN_IN_TEXT.search(text, search)) is not None:
        start, search = match.start() - 2, match.start() + 1
        if start and text[start - 1].isalnum():
            continue
        length = iban_length(text[start : start + 2].upper())
        alnums = [i for i, char in enumerate(text[start : match.end()]) if char.isalnum()]
        if length is None or len(alnums) < length:
            continue
        end = start + alnums[length - 1] + 1
        value = re.sub(r"[^A-Za-z0-9]", "", text[start:end]).upper()
        if stdnum_iban.is_valid(value, check_country=False):
            search = end + 2
            yield start, end, value


@FUZZ
@given(TEXTS)
@example("de89 3704 0044 0532 0130 00 GB82WEST12345698765432MT103 reference")
def test_ibans_found_through_the_shape_are_the_ones_a_scan_of_the_text_finds(text: str) -> None:
    assert list(find_ibans(text)) == list(_ibans_in_text(text))


@FUZZ
@given(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=5, max_size=34))
def test_the_mod97_check_in_c_is_python_stdnums(value: str) -> None:
    assert _mod97(value) == mod_97_10.checksum(value[4:] + value[:4])


def _issuer_by_scheme(digits: str) -> bool:
    """The issuer check as it was: one prefix comparison per scheme."""
    return any(
        len(digits) in lengths and lo <= int(digits[: len(str(lo))]) <= hi
        for lo, hi, lengths in _ISSUERS
    )


def test_the_issuer_check_by_six_digits_agrees_at_every_range_edge() -> None:
    edges = {str(n) for lo, hi, _ in _ISSUERS for n in (lo - 1, lo, hi, hi + 1)}
    for prefix in edges:
        for length in range(13, 20):
            for fill in "09":
                digits = (prefix + fill * 19)[:length]
                assert known_issuer(digits) == _issuer_by_scheme(digits), digits


@FUZZ
@given(st.text("0123456789", min_size=13, max_size=19))
def test_the_issuer_check_by_six_digits_agrees_anywhere(digits: str) -> None:
    assert known_issuer(digits) == _issuer_by_scheme(digits)
