"""The detectors' shortcuts look at less of a text; they never find less, or more.

Each cheap test that lets a detector skip work (scans of the text's shape, the tests of
what follows a run of digits, the IBAN and card checks done in C) is checked against the
slower form it replaced, or against the search it spares, on generated text dense in
digits, separators, letters and real values. Bounded and derandomized, so CI runs the same
examples every time.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.guard.banking import _ISSUERS, known_issuer

FUZZ = settings(
    max_examples=400, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


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
