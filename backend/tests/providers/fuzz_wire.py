"""Hypothesis strategies and an in-process HTTP stand-in for fuzzing the provider parsers.

The stand-in replaces only aiohttp's session: the provider module under test builds its
request, reads the (fuzzed) body through the real SSE reader and maps it, as in production.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

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


def shaped(
    tree: dict[str, Any], required: dict[str, st.SearchStrategy[Any]] | None = None
) -> st.SearchStrategy[Any]:
    """Objects with the API's own keys (each optional), whose values are arbitrary JSON or
    the next level of the shape: so the fuzzer reaches deep paths, with wrong types too.

    `required` keys are always there, with exactly their strategy's values (an event's
    `type`, so each kind of event gets its own shape).
    """
    def node(value: Any) -> st.SearchStrategy[Any]:
        if isinstance(value, dict):
            return shaped(value)
        if isinstance(value, list):  # a list of the inner shape
            return mostly(st.lists(node(value[0]), max_size=3), JSON)
        return (value if isinstance(value, st.SearchStrategy) else JSON) | JSON

    optional = {k: node(v) for k, v in tree.items()}
    return mostly(st.fixed_dictionaries(required or {}, optional=optional), JSON)


def mostly(
    common: st.SearchStrategy[Any], *rare: st.SearchStrategy[Any], times: int = 3
) -> st.SearchStrategy[Any]:
    """`common`, `times` times as often as each of `rare`.

    An even split at every level made a key four levels down (`choices[0].delta.refusal`),
    or an event after a few others that may end the stream, too rare to be reached at all.
    """
    return st.one_of(*[common] * times, *rare)


def chunked(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """`data` split at the given offsets (each taken modulo its length)."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# The "event name" that makes `frames` write its data bare, outside the SSE framing, as
# Gemini writes a failing stream's google.rpc.Status (pretty-printed JSON lines).
BARE = "<bare>"


def frames(events: Sequence[tuple[str | None, Any]]) -> bytes:
    """SSE frames: an optional `event:` name and one `data:` line each; str data as is.

    An event named `BARE` is written as its (pretty-printed) JSON lines, with no field name.
    """
    out = bytearray()
    for name, data in events:
        if name == BARE:
            text = data if isinstance(data, str) else orjson.dumps(
                data, option=orjson.OPT_INDENT_2
            ).decode()
            out += text.encode("utf-8", "surrogatepass") + b"\n"
            continue
        if name:
            out += b"event: " + name.encode() + b"\n"
        text = data if isinstance(data, str) else orjson.dumps(data).decode()
        for line in text.split("\n"):
            out += b"data: " + line.encode("utf-8", "surrogatepass") + b"\n"
        out += b"\n"
    return bytes(out)


class _Content:
    def __init__(self, reads: list[bytes]) -> None:
        self._reads = iter(reads)

    async def readany(self) -> bytes:
        """The next read; b"" once there are none (the end of the body), as aiohttp's."""
        return next(self._reads, b"")


class _Response:
    def __init__(self, reads: list[bytes], status: int, headers: CIMultiDictProxy[str]) -> None:
        self.status = status
        self.headers = headers
        self.content = _Content(reads)
        self._body = b"".join(reads)

    async def read(self) -> bytes:
        return self._body

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeSession:
    """Answers every POST with the given reads, like a misbehaving upstream: status 200 unless
    told otherwise, and headers as aiohttp gives them (case-insensitive)."""

    def __init__(
        self, reads: list[bytes], *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self._reads = reads
        self._status = status
        self._headers = CIMultiDictProxy(CIMultiDict(headers or {}))

    def post(self, url: str, **kwargs: Any) -> _Response:
        """The response (aiohttp's `session.post` is used as an async context manager)."""
        return _Response(self._reads, self._status, self._headers)
