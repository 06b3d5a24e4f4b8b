"""one_line: the escape every log line with outside text goes through."""

from __future__ import annotations

from backend.observability.safe_text import one_line


def test_one_line_escapes_every_control_and_line_breaking_character() -> None:
    text = "".join(chr(c) for c in range(0x00, 0xA0)) + "\u2028\u2029\u202e\u2066 ok é"
    escaped = one_line(text)
    assert escaped.isprintable()
    assert "\\n" in escaped and "\\r" in escaped and "\\x85" in escaped and "\\u2028" in escaped
    assert escaped.endswith(" ok é")  # printable text, accents included, is left alone
    assert one_line(escaped) == escaped
