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
from backend.guard.detect import _PHONE_SHAPED, _RUN, Detector, _gate, _letter_after
from backend.guard.national import NATIONAL_IDS, NINO_FOLLOWS, WINDOW_AFTER, find_ninos
from backend.guard.secrets import _UNDERSCORE_HINTS, _around_underscores
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
# Every configurable id, so each one's shortcut is exercised.
DETECTOR = Detector(national_id_names=tuple(NATIONAL_IDS))

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


def _runs(text: str) -> Iterator[tuple[int, int, int]]:
    shape = shape_of(text)
    for run in _RUN.finditer(shape):
        yield run.start(), run.end(), shape.count(DIGIT, *run.span())


@FUZZ
@given(TEXTS)
# NIRs only a six-digit run's window holds (their own runs go on with other digits).
@example("ref 123456,132073202152762  12 end")
@example("ref 123456;285057800608441 7 end")
@example("NINO AB 12 34 56 C, NIR 1 85 05 2A 123 456 78")
def test_what_must_follow_a_run_never_skips_an_id_its_window_holds(text: str) -> None:
    for start, end, digits in _runs(text):
        before, after = max(0, start - 4), min(len(text), end + WINDOW_AFTER)
        if digits == 6 and not NINO_FOLLOWS.match(text, end):
            assert list(find_ninos(text, before, min(len(text), end + 4))) == []
        for kind in NATIONAL_IDS.values():
            follows = kind.follows.get(digits)
            if follows is not None and not follows.match(text, end):
                assert list(kind.find(text, before, after)) == [], kind.name


@FUZZ
@given(TEXTS)
def test_a_runs_gate_closes_only_where_every_id_of_its_count_would_skip_it(text: str) -> None:
    for _, end, digits in _runs(text):
        kinds = DETECTOR._ids_by_digits.get(digits)
        gate = _gate(digits, kinds) if kinds is not None else None
        if gate is None or gate.match(text, end):
            continue
        assert digits != 6 or not NINO_FOLLOWS.match(text, end)
        for kind in kinds or ():
            follows = kind.follows.get(digits)
            assert not (kind.letter_after and _letter_after(text, end))
            assert follows is None or not follows.match(text, end)


def _phone_shaped_as_it_was(text: str, start: int, end: int) -> bool:
    prev = text[start - 1] if start else " "
    if prev in "+(" or text[max(0, start - 2) : start] == "+ ":
        return True
    if prev.isalnum() or prev in "-/.,":
        return False
    return text[start] == "0" or (end - start >= 12 and text[start + 3] in "-. )")


@FUZZ
@given(TEXTS)
@example("call + 44 20 7946 0958 or (415) 555-2671, not ,0800 123 456")
@example("NANP 415) 555-2671 and 415.555.2671, too short: 415-555-267")
def test_the_phone_shape_pattern_decides_as_the_python_test_it_replaced(text: str) -> None:
    for start, end, _ in _runs(text):
        shaped = _PHONE_SHAPED.match(text, start, end) is not None
        assert shaped == _phone_shaped_as_it_was(text, start, end), text[start:end]


_NEAR_UNDERSCORES = st.sampled_from([*_UNDERSCORE_HINTS, "_", "__", "\0", "sk", "gh", "pat_", " "])


@FUZZ
@given(st.lists(_NEAR_UNDERSCORES, max_size=30).map("".join))
@example("github_pat_ and sk_live_ and ghp_" + "_" * 10)  # past the few: the whole text
def test_the_hints_around_underscores_are_the_hints_in_the_text(text: str) -> None:
    around = _around_underscores(text)
    assert [h for h in _UNDERSCORE_HINTS if h in around] == [
        h for h in _UNDERSCORE_HINTS if h in text
    ]
