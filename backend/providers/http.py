"""HTTP plumbing shared by the provider modules: one POST helper, one error mapping.

Each provider module supplies how to read its API's error body; the status-to-error
mapping and the transport failures are the same for all of them.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from backend.observability.safe_text import one_line
from backend.providers.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderStreamCut,
    ProviderTimeout,
    ProviderUnavailable,
)

# Anything shaped like a provider key is cut out of upstream messages before we repeat
# them: OpenAI's 401 body, for one, echoes a masked form of the key it was sent.
_KEY_PATTERN = re.compile(r"(sk-[A-Za-z0-9_*.\-]+|AIza[A-Za-z0-9_\-]+|key=[^&\s\"']+)")
_MAX_MESSAGE = 300

ErrorReader = Callable[[bytes], str]
# For APIs whose error body says more than a message (Google's invalid key, its retry delay).
ErrorMapper = Callable[[int, bytes, Mapping[str, str]], ProviderError]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Bounds for one upstream attempt (docs/resilience.md has the whole picture).

    `connect`: opening the connection. `total`: the whole attempt, body included.
    `stream_idle`: silence on the wire while streaming, before the first chunk as well as
    between chunks. `first_token`: from the request to the first text; the chat service
    enforces it, since only it knows when text (not a ping) arrives. `idle` bounds silence
    in both modes; the factory leaves it unset, because a non-streamed answer is silent
    until it is complete.
    """

    connect: float
    total: float
    idle: float | None = None
    stream_idle: float | None = None
    first_token: float | None = None

    def client_timeout(self) -> aiohttp.ClientTimeout:
        """For a non-streamed call: `sock_read` bounds the first byte and every gap after it."""
        return aiohttp.ClientTimeout(
            total=self.total, sock_connect=self.connect, sock_read=self.idle or self.total
        )

    def stream_timeout(self) -> aiohttp.ClientTimeout:
        """For a stream: aiohttp re-arms `sock_read` on every read, at no cost of ours."""
        idle = self.stream_idle or self.idle or self.total
        return aiohttp.ClientTimeout(total=self.total, sock_connect=self.connect, sock_read=idle)


def redact(text: str) -> str:
    """Remove key-like strings and control characters, and bound the length of a message
    meant for clients and logs."""
    return one_line(_KEY_PATTERN.sub("[redacted]", text))[:_MAX_MESSAGE]


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (the forms the official SDKs honour)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                seconds = float(value) * scale
            except ValueError:
                continue
            # "inf" and "nan" parse as floats; no hint is better than one nobody can wait.
            if math.isfinite(seconds):
                return max(0.0, seconds)
    return None


def status_error(
    provider: str, status: int, message: str, headers: Mapping[str, str] | None = None
) -> ProviderError:
    """Map an HTTP status and the API's own message into our error tree."""
    # An error status comes before any generation: the provider bills none of these.
    text = f"{provider} returned HTTP {status}: {redact(message)}"
    if status in (401, 403):
        return ProviderAuthError(
            f"{provider} rejected the API key (HTTP {status})", provider=provider, status=status,
            billed=False,
        )
    retry = parse_retry_after(headers or {})
    if status == 429:
        return ProviderRateLimited(
            text, provider=provider, status=status, retry_after=retry, billed=False
        )
    if status == 408:
        return ProviderTimeout(text, provider=provider, status=status, billed=False)
    if status >= 500:
        # 503 and Anthropic's 529 often say when to come back: honoured like a 429's.
        return ProviderUnavailable(
            text, provider=provider, status=status, retry_after=retry, billed=False
        )
    return ProviderBadRequest(text, provider=provider, status=status, billed=False)


def transport_error(provider: str, exc: BaseException) -> ProviderError:
    """Map an aiohttp/asyncio failure (no HTTP status) into our error tree."""
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return ProviderTimeout(f"{provider} did not answer in time", provider=provider)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProviderStreamCut(f"{provider} closed the response mid-way", provider=provider)
    if isinstance(exc, aiohttp.ClientConnectorError):
        # The connection never opened: nothing was sent, nothing billed.
        return ProviderUnavailable(
            f"could not reach {provider}: {type(exc).__name__}", provider=provider, billed=False
        )
    return ProviderUnavailable(
        f"could not reach {provider}: {type(exc).__name__}", provider=provider
    )


@asynccontextmanager
async def post(
    session: aiohttp.ClientSession,
    url: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    body: dict[str, Any],
    timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp applies it per request
    read_error: ErrorReader = str,
    map_error: ErrorMapper | None = None,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """POST a JSON body; yield the 2xx response, or raise the mapped `ProviderError`.

    An error status is mapped by `map_error` when given, else by `status_error` with the
    message `read_error` finds in the body.
    """
    try:
        async with session.post(
            url, data=orjson.dumps(body), headers=headers, timeout=timeout
        ) as response:
            if response.status >= 400:
                raw = await response.read()
                if map_error is not None:
                    raise map_error(response.status, raw, response.headers)
                raise status_error(provider, response.status, read_error(raw), response.headers)
            yield response
    except ProviderError:
        raise
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise transport_error(provider, exc) from exc


async def read_json(response: aiohttp.ClientResponse, provider: str) -> Any:
    """Read and parse a JSON body, mapping a truncated or invalid body to a cut stream."""
    try:
        return orjson.loads(await response.read())
    except orjson.JSONDecodeError as exc:
        raise ProviderStreamCut(f"{provider} sent an invalid JSON body", provider=provider) from exc


def error_text(raw: bytes, *path: str) -> str:
    """Dig a message out of a JSON error body by key path; fall back to the raw text."""
    try:
        node: Any = orjson.loads(raw)
        for key in path:
            node = node[key]
        return str(node)
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
        return raw.decode("utf-8", "replace")
