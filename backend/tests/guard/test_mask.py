"""Masking, restoring (whole and streamed at every split), and the policy."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from backend.guard.detect import Detector
from backend.guard.mask import PLACEHOLDER, Masker, StreamRestorer, restore
from backend.guard.policy import Guard, PiiPolicy

IBAN = "DE89 3704 0044 0532 0130 00"
GUARD = Guard(Detector(), PiiPolicy(mode="mask"))


def test_the_same_value_in_any_spacing_gets_one_placeholder_across_the_conversation() -> None:
    scan = GUARD.scan(
        [f"old: pay {IBAN}", "ok",
         "again DE89370400440532013000 and a.b@example.com, A.B@example.com"],
        GUARD.default,
    )
    assert scan.texts == (
        "old: pay [IBAN_1]", "ok", "again [IBAN_1] and [EMAIL_1], [EMAIL_1]",
    )
    assert scan.counts == {"iban": 1, "email": 1}
    assert scan.originals == {"[IBAN_1]": IBAN, "[EMAIL_1]": "a.b@example.com"}


def test_numbering_is_per_kind_in_order_of_first_appearance() -> None:
    masker = Masker()
    detector = Detector()
    text = "x@example.com, card 4111111111111111, y@example.com, 5555555555554444"
    assert masker.mask(text, detector.find(text)) == "[EMAIL_1], card [CARD_1], [EMAIL_2], [CARD_2]"


def test_block_mode_counts_but_never_masks() -> None:
    scan = GUARD.scan([f"pay {IBAN}"], PiiPolicy(mode="block"))
    assert scan.mode == "block" and scan.texts == (f"pay {IBAN}",) and scan.counts == {"iban": 1}


@pytest.mark.parametrize("mode", ["mask", "block"])
def test_a_conversation_with_nothing_found_comes_back_as_it_was(mode: str) -> None:
    texts = ["Invoice 2024-0815, EUR 980.00", "ok", f"and the IBAN? {IBAN[:9]}"]
    scan = GUARD.scan(texts, PiiPolicy(mode=mode))  # type: ignore[arg-type]
    assert (scan.mode, scan.texts, scan.counts, scan.originals) == (mode, tuple(texts), {}, {})
    assert not scan.found
    # ... and one value anywhere in it is still masked, wherever it is.
    scan = GUARD.scan([*texts, f"pay {IBAN}"], PiiPolicy(mode="mask"))
    assert scan.texts == (*texts, "pay [IBAN_1]") and scan.counts == {"iban": 1}


def test_off_mode_looks_at_nothing() -> None:
    scan = GUARD.scan([f"pay {IBAN}"], PiiPolicy(mode="off"))
    assert scan.counts == {} and scan.texts == (f"pay {IBAN}",)


def test_a_scan_keeps_the_user_data_out_of_its_repr() -> None:
    scan = GUARD.scan([f"pay {IBAN}"], GUARD.default)
    assert "3704" not in repr(scan) and "iban" in repr(scan)


def test_restore_puts_back_known_placeholders_and_leaves_others() -> None:
    originals = {"[IBAN_1]": IBAN}
    assert restore("to [IBAN_1], not [IBAN_2] nor [iban_1]", originals) == (
        f"to {IBAN}, not [IBAN_2] nor [iban_1]"
    )


ANSWER = "Send [IBAN_1] the [x] amount; mail [EMAIL_12] [NATIONAL_ID_1] or [CARD_1]]["
ORIGINALS = {
    "[IBAN_1]": IBAN, "[EMAIL_12]": "a@b.example", "[NATIONAL_ID_1]": "123-45-6789",
    "[CARD_1]": "4111 1111 1111 1111",
}


def _streamed(pieces: list[str]) -> tuple[str, list[str]]:
    restorer = StreamRestorer(ORIGINALS)
    out = [restorer.feed(piece) for piece in pieces]
    out.append(restorer.flush())
    return "".join(out), out


def test_a_placeholder_split_at_any_point_across_two_chunks_is_restored() -> None:
    whole = restore(ANSWER, ORIGINALS)
    for cut in range(len(ANSWER) + 1):
        joined, out = _streamed([ANSWER[:cut], ANSWER[cut:]])
        assert joined == whole, cut
        assert not any(PLACEHOLDER.search(piece) for piece in out)


def test_random_chunkings_restore_the_same_and_hold_back_only_a_placeholder_start() -> None:
    rng = random.Random(7)
    whole = restore(ANSWER, ORIGINALS)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(ANSWER)), rng.randint(1, 12)))
        pieces = [ANSWER[a:b] for a, b in zip([0, *cuts], [*cuts, len(ANSWER)], strict=True)]
        restorer = StreamRestorer(ORIGINALS)
        assert "".join(restorer.feed(p) for p in pieces) + restorer.flush() == whole
        # With placeholders standing for themselves, what is not out yet is what is held.
        echo = StreamRestorer({p: p for p in ORIGINALS})
        fed = sent = ""
        for piece in pieces:
            fed, sent = fed + piece, sent + echo.feed(piece)
            assert fed.startswith(sent) and len(fed) - len(sent) <= 20


def test_text_without_brackets_goes_out_at_once() -> None:
    restorer = StreamRestorer(ORIGINALS)
    assert restorer.feed("no placeholder here ") == "no placeholder here "
    assert restorer.feed("until [IB") == "until "  # only the possible start is held
    assert restorer.feed("M stock") == "[IBM stock"  # it was not one: released
    assert restorer.feed("[NATIONAL_ID_12345678") == "[NATIONAL_ID_12345678"  # too long
    assert restorer.flush() == ""


@pytest.mark.parametrize("types", [[], ["nope"]])
def test_a_policy_with_no_or_unknown_types_is_refused(types: list[str]) -> None:
    with pytest.raises(ValidationError):
        PiiPolicy.model_validate({"mode": "mask", "types": types})


def test_leaving_types_out_means_all_of_them() -> None:
    assert set(PiiPolicy(mode="mask").types) == {
        "card", "iban", "email", "phone", "national_id", "secret",
    }
