"""Hypothesis strategies and an in-process HTTP stand-in for fuzzing the provider parsers.

The stand-in replaces only aiohttp's session: the provider module under test builds its
request, reads the (fuzzed) body through the real SSE reader and maps it, as in production.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from hypothesis import strategies as st

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def shaped(tree: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Objects with the API's own keys (each optional), whose values are arbitrary JSON or
    the next level of the shape: so the fuzzer reaches deep paths, with wrong types too."""
    def node(value: Any) -> st.SearchStrategy[Any]:
        if isinstance(value, dict):
            return shaped(value)
        if isinstance(value, list):  # a list of the inner shape
            return st.lists(node(value[0]), max_size=3) | JSON
        return value if isinstance(value, st.SearchStrategy) else JSON

    return st.fixed_dictionaries({}, optional={k: node(v) | JSON for k, v in tree.items()}) | JSON


def chunked(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """`data` split at the given offsets (each taken modulo its length)."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def frames(events: Sequence[tuple[str | None, Any]]) -> bytes:
    """SSE frames: an optional `event:` name and one `data:` line each; str data as is."""
    out = bytearray()
    for name, data in events:
        if name:
            out += b"event: " + name.encode() + b"\n"
        text = data if isinstance(data, str) else orjson.dumps(data).decode()
        for line in text.split("\n"):
            out += b"data: " + line.encode("utf-8", "surrogatepass") + b"\n"
        out += b"\n"
    return bytes(out)


class _Content:
    def __init__(self, reads: list[bytes]) -> None:
        self._reads = reads

    async def iter_any(self) -> AsyncIterator[bytes]:
        for read in self._reads:
            yield read


class _Response:
    status = 200
    headers: dict[str, str] = {}  # noqa: RUF012 - read only

    def __init__(self, reads: list[bytes]) -> None:
        self.content = _Content(reads)
        self._body = b"".join(reads)

    async def read(self) -> bytes:
        return self._body

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeSession:
    """Answers every POST with status 200 and the given reads, like a misbehaving upstream."""

    def __init__(self, reads: list[bytes]) -> None:
        self._reads = reads

    def post(self, url: str, **kwargs: Any) -> _Response:
        """The 200 response (aiohttp's `session.post` is used as an async context manager)."""
        return _Response(self._reads)
