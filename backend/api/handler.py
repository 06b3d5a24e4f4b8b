"""A lean request handler for the chat routes: FastAPI's semantics, without its machinery.

FastAPI's generic handler reads the body, parses it with the standard library's JSON, opens
exit stacks, walks the dependency tree and only then calls the endpoint: on /chat/send that
was about a tenth of the request's CPU. A chat route has one shape (a JSON body model, the
one `chat_call` dependency, the request), so this handler does just those steps, with the
same outcomes: the same validation (the route's own body field), the same errors
(`RequestValidationError` with FastAPI's `json_invalid` and `missing` entries, a 400 for a
body that cannot be parsed at all), the endpoint called with the same arguments. Routes of
any other shape keep FastAPI's handler.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from fastapi._compat import get_missing_field_error
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
_LOC = ("body",)


def lean_handler(
    route: APIRoute, dependency: Callable[[Request], Awaitable[Any]]
) -> Handler | None:
    """A handler for `route` if its endpoint takes exactly a JSON body, `dependency` and the
    request, and returns a Response itself; None (use FastAPI's) otherwise."""
    dependant = route.dependant
    if not _chat_shaped(dependant, dependency) or route.body_field is None:
        return None
    field = route.body_field
    endpoint = dependant.call
    assert endpoint is not None and dependant.request_param_name is not None
    body_name = dependant.body_params[0].name
    dep_name = dependant.dependencies[0].name
    request_name = dependant.request_param_name
    assert dep_name is not None

    async def handle(request: Request) -> Response:
        value = await _parsed_body(request)
        body, errors = field.validate(value, {}, loc=_LOC) if value is not _EMPTY else (
            None, [get_missing_field_error(loc=_LOC)]
        )
        if errors:
            raise RequestValidationError(errors, body=None if value is _EMPTY else value)
        arguments = {body_name: body, dep_name: await dependency(request), request_name: request}
        response: Response = await endpoint(**arguments)
        return response

    return handle


def _chat_shaped(dependant: Dependant, dependency: Callable[..., Any]) -> bool:
    return (
        len(dependant.body_params) == 1
        and len(dependant.dependencies) == 1
        and dependant.dependencies[0].call is dependency
        and dependant.request_param_name is not None
        and not (dependant.path_params or dependant.query_params or dependant.header_params
                 or dependant.cookie_params)
    )


_EMPTY = object()  # no body at all: FastAPI's "missing"


async def _parsed_body(request: Request) -> Any:
    """The JSON body, parsed once (orjson; the standard library only where orjson refuses,
    so what is accepted and how a refusal reads stay FastAPI's).

    The chat routes have already refused a Content-Type that is not JSON (415).
    """
    cached = getattr(request, "_json", _EMPTY)  # a rate limit may have read a field already
    if cached is not _EMPTY:
        return cached
    raw = await request.body()
    if not raw:
        return _EMPTY
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson is strict (no NaN, no lone surrogates, 64-bit integers, 1024 levels); the
        # standard library, which FastAPI uses, decides what these bodies are.
        value = _stdlib_json(raw)
    request._json = value  # what Request.json() would have cached
    return value


def _stdlib_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
              "input": {}, "ctx": {"error": exc.msg}}],
            body=exc.doc,
        ) from exc
    except Exception as exc:  # too deep, invalid UTF-8: what FastAPI answers for these
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc
