"""Text from outside (upstream bodies, client headers, paths) made safe for one log line.

A line break in such text would let its author write a line of their own into our logs
(a fake access line, a fake "admin token accepted"); other control characters can rewrite
a terminal. Every log call that carries outside text passes it through `one_line`.
"""

from __future__ import annotations

# C0 controls and DEL, C1 controls (NEL, U+0085, breaks lines too), the Unicode line and
# paragraph separators, and the bidirectional overrides that reorder what a viewer shows.
_UNSAFE = [
    *range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029,
    *range(0x202A, 0x202F), *range(0x2066, 0x206A),
]
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_ESCAPES = {
    code: _NAMED.get(code, f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in _UNSAFE
}


def one_line(text: object) -> str:
    """`text` as a str with every control or line-breaking character written as an escape."""
    return str(text).translate(_ESCAPES)
