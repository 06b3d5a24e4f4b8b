"""The detectors on the labelled corpus and on the cases that decide their design."""

from __future__ import annotations

import pytest

from backend.guard.detect import FIRST_MAPPED, Detector, ascii_table
from backend.guard.kinds import ALL_TYPES
from backend.guard.national import national_ids
from backend.tests.guard.corpus import CLEAN_TEXTS, corpus

DETECTOR = Detector()


def _found(text: str) -> set[tuple[str, str]]:
    return {(f.kind, text[f.start : f.end]) for f in DETECTOR.find(text)}


def test_every_valid_value_of_the_corpus_is_found_with_its_kind() -> None:
    samples = [s for s in corpus() if s.label == "valid"]
    assert len(samples) > 130 and {k for s in samples for k, _ in s.expected} == set(ALL_TYPES)
    missed = [(s.expected, s.text) for s in samples if not set(s.expected) <= _found(s.text)]
    assert missed == []


def test_near_misses_and_clean_finance_texts_pass_untouched() -> None:
    samples = [s for s in corpus() if s.label != "valid"]
    assert len(samples) > 80 and len(CLEAN_TEXTS) >= 20
    flagged = [(_found(s.text), s.text) for s in samples if _found(s.text)]
    assert flagged == []


def test_nothing_but_the_expected_values_is_found_in_valid_samples() -> None:
    extra = [
        (found - set(s.expected), s.text)
        for s in corpus() if s.label == "valid" and (found := _found(s.text)) - set(s.expected)
    ]
    assert extra == []


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("card 4111 1111 1111 1111 ok", "card"),
        ("card 4111-1111-1111-1111 ok", "card"),
        ("amex 3782 822463 10005 ok", "card"),
        ("IBAN de89 3704 0044 0532 0130 00", "iban"),  # typed in lower case: still one
        ("IBAN de89 3704 0044 0532 0130 01", None),  # ... but the checksum still decides
        ("ref ab12 3456 7890 1234 5678 90", None),  # no such country
        ("IBAN DE89-3704-0044-0532-0130-00.", "iban"),
        ("call +44 20 7946 0958.", "phone"),
        ("call 0044 20 7946 0958.", "phone"),
        ("call (415) 555-2671.", "phone"),
        ("NINO AB 12 34 56 C.", "national_id"),
    ],
)
def test_layouts(text: str, kind: str | None) -> None:
    assert {k for k, _ in _found(text)} == ({kind} if kind else set())


@pytest.mark.parametrize(("text", "expected"), [
    # A number a space away joins the value's digits into one longer run of digits.
    ("Card: 4111 1111 1111 1111 12/27 123", ("card", "4111 1111 1111 1111")),
    ("two charges on 4111111111111111 2024", ("card", "4111111111111111")),
    ("exp 12/27 4111 1111 1111 1111", ("card", "4111 1111 1111 1111")),
    ("SSN 123-45-6789 12 items", ("national_id", "123-45-6789")),
    ("SSN 12 123-45-6789 today", ("national_id", "123-45-6789")),
    ("BSN: 111222333 4 docs", ("national_id", "111222333")),
    ("call +44 20 7946 0958 12 times", ("phone", "+44 20 7946 0958")),
    ("on 06 12 34 56 15 about", ("phone", "06 12 34 56 15")),  # the longest, not 06 12 34 56
])
def test_a_value_is_found_with_other_numbers_a_space_away(
    text: str, expected: tuple[str, str]
) -> None:
    assert _found(text) == {expected}


def test_a_variable_length_phone_followed_by_a_digit_is_masked_whole() -> None:
    # Italian numbers have no fixed length: `+39 02 1234 5678 2` is itself a valid number,
    # so the longer one is taken; the value asked about is inside it either way.
    [(kind, value)] = _found("Please ring +39 02 1234 5678 2 times.")
    assert kind == "phone" and "+39 02 1234 5678" in value


def test_no_value_is_found_in_the_middle_of_a_longer_number() -> None:
    # `0532 0130 01` reads as a German phone number, but here it is digits of an account.
    assert _found("IBAN de89 3704 0044 0532 0130 01") == set()
    assert _found("ref 89 3704 0044 0532 0130 01 9") == set()


def test_a_secret_wins_over_the_digits_inside_it() -> None:
    text = "key sk-proj-4111111111111111abcdefghijkl42 end"
    assert _found(text) == {("secret", "sk-proj-4111111111111111abcdefghijkl42")}


def test_one_changed_digit_and_unknown_issuers_are_not_cards() -> None:
    assert _found("card 4111 1111 1111 1112") == set()  # Luhn fails
    assert _found("ref 9111 1111 1111 1116") == set()  # Luhn passes, no such issuer


def test_ssns_in_never_issued_ranges_are_not_found() -> None:
    for text in ("000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000"):
        assert _found(f"SSN {text}") == set(), text


def test_weak_ids_need_their_keyword_just_before_them() -> None:
    assert _found("BSN: 111222333") == {("national_id", "111222333")}
    assert _found("order 111222333 shipped") == set()
    # A keyword earlier, with another number in between, does not count.
    assert _found("SSN 123-45-6789, then order 123456789") == {("national_id", "123-45-6789")}


def test_only_the_asked_types_are_looked_for() -> None:
    text = "mail a.b@example.com, card 4111111111111111"
    assert {f.kind for f in DETECTOR.find(text, ("email",))} == {"email"}
    assert {f.kind for f in DETECTOR.find(text, ("card",))} == {"card"}


def test_the_configured_national_ids_decide_what_counts() -> None:
    only_us_uk = Detector(national_id_names=())
    assert only_us_uk.find("DNI 54362315K") == []
    assert DETECTOR.find("DNI 54362315K") != []
    with pytest.raises(ValueError, match="unknown national ids"):
        national_ids(["xx.nothing"])


def test_national_phone_formats_count_only_for_the_configured_regions() -> None:
    assert Detector(phone_regions=("GB",)).find("call 020 7946 0958 now") != []
    assert Detector(phone_regions=("US",)).find("call 020 7946 0958 now") == []
    assert Detector(phone_regions=("US",)).find("call +44 20 7946 0958 now") != []


def test_findings_keep_the_value_out_of_their_repr() -> None:
    (finding,) = DETECTOR.find("card 4111111111111111")
    assert "4111" not in repr(finding)


def test_other_digits_and_spaces_are_read_as_ascii_at_the_same_positions() -> None:
    thin = "\u2009"  # a thin space
    iban = thin.join(["DE89", "3704", "0044", "0532", "0130", "00"])
    text = f"card ４１１１ １１１１ １１１１ １１１１, IBAN {iban}."
    found = DETECTOR.find(text)
    assert [(f.kind, f.key) for f in found] == [
        ("card", "4111111111111111"), ("iban", "DE89370400440532013000"),
    ]
    assert text[found[0].start : found[0].end] == "４１１１ １１１１ １１１１ １１１１"


def test_latin_text_skips_the_translation_only_where_nothing_would_change() -> None:
    # The fast path for accented Latin text is right only if the table maps nothing else there.
    below = [code for code in ascii_table() if code < ord(FIRST_MAPPED)]
    assert below == [0xA0]
    iban = "\u00a0".join(["DE89", "3704", "0044", "0532", "0130", "00"])
    assert _found(f"Überweisung an {iban}, fällig") == {("iban", iban)}
