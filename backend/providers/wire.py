"""Reading a provider's JSON defensively: each value of the type we need, or a neutral default.

An upstream, or a proxy in between, can send any JSON where the API promises an object; the
provider modules read through these so a wrong type is a missing value (or, for a whole
body, a `ProviderStreamCut`), never a bare TypeError or AttributeError escaping the error tree.
"""

from __future__ import annotations

from typing import Any

from backend.providers.errors import ProviderStreamCut

# Token counts go into 32-bit integer columns; anything outside is not a real count.
_MAX_COUNT = 2**31 - 1


def obj(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def objects(value: Any) -> list[dict[str, Any]]:
    """The JSON objects of `value` if it is an array (other elements skipped), else none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def text(value: Any) -> str | None:
    """`value` if it is a string, else None."""
    return value if isinstance(value, str) else None


def count(value: Any) -> int | None:
    """`value` if it is a plausible token count (a non-negative JSON integer), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_COUNT:
        return value
    return None


def body_object(provider: str, value: Any) -> dict[str, Any]:
    """A whole response body or stream frame, which must be an object: else a cut stream."""
    if not isinstance(value, dict):
        raise ProviderStreamCut(f"{provider} sent an unexpected body", provider=provider)
    return value
