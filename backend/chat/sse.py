"""SSE framing for /chat/stream, exactly as the seed shows it.

Frames are encoded straight to bytes with orjson: per chunk we build one small dict and
nothing else, since this runs for every token of every stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from backend.chat.service import ChatStream
from backend.errors import PortalError
from backend.providers.base import TextDelta

_PREFIX = b"event: message\ndata: "
_ERROR_PREFIX = b"event: error\ndata: "
_END = b"\n\n"


async def sse_frames(stream: ChatStream) -> AsyncIterator[bytes]:
    """Message frames as text arrives, then one final frame; or a final error frame."""
    try:
        async for event in stream.events():
            if isinstance(event, TextDelta):
                yield (
                    _PREFIX
                    + orjson.dumps(
                        {
                            "content": event.text,
                            "is_final": False,
                            "input_tokens": 0,
                            "output_tokens": 0,
                            "model": "",
                            "latency_ms": 0.0,
                        }
                    )
                    + _END
                )
    except PortalError as exc:
        yield (
            _ERROR_PREFIX
            + orjson.dumps({**exc.body(), "request_id": stream.chat.context.request_id})
            + _END
        )
        return
    record = stream.record
    assert record is not None  # events() records in its finally, before we get here
    yield (
        _PREFIX
        + orjson.dumps(
            {
                "content": "",
                "is_final": True,
                "input_tokens": record.input_tokens,
                "output_tokens": record.output_tokens,
                "model": record.model,
                "latency_ms": record.latency_ms,
                "provider": record.provider,
                "estimated_cost_usd": record.estimated_cost_usd,
                "tokens_estimated": record.tokens_estimated,
                "request_id": record.request_id,
            }
        )
        + _END
    )
